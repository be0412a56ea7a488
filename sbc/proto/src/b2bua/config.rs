//! What the B2BUA needs to know about its surroundings: its own addresses per side, where the
//! PBX and the trunk are, timers, and which headers may cross.

use std::{net::SocketAddr, time::Duration};

use crate::{
    auth::Credentials,
    limit::CallLimits,
    net::TransportKind,
    routing::{HeaderRule, InboundRoute, NumberRule, OutboundRoute},
    transaction::TimerConfig,
};

/// The SBC's own SIP address on one side (written into Via and Contact on that side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    /// Address and port advertised on that side.
    pub addr: SocketAddr,
    /// Transport used on that side.
    pub transport: TransportKind,
}

/// A next hop: the PBX or a trunk's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: TransportKind,
}

/// Number and header rules applied in one direction of a trunk's calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manipulation {
    /// Called-number rules (Request-URI and To user), first match wins.
    pub called: Vec<NumberRule>,
    /// Calling-number rules (From, P-Asserted-Identity and P-Preferred-Identity user), first
    /// match wins.
    pub calling: Vec<NumberRule>,
    /// Header rules for the INVITE that starts the call, in order.
    pub headers: Vec<HeaderRule>,
}

/// A trunk's own outside address: written into Via/Contact, and sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkLocal {
    /// As written into messages (the advertised address under 1:1 NAT).
    pub advertised: LocalAddr,
    /// The listener's bound address, which the transport sends from.
    pub bound: SocketAddr,
}

/// A carrier trunk as the B2BUA uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkConfig {
    /// Name (metrics, logs, the `${trunk}` variable).
    pub name: String,
    /// Its proxy.
    pub target: Target,
    /// Further servers of the same trunk, tried in order after `target` before the next
    /// trunk (RFC 3263 §4.3: the other SRV targets / addresses of its DNS name).
    pub alternates: Vec<Target>,
    /// Other addresses it sends from (all its DNS name's addresses), for attributing calls.
    pub sources: Vec<std::net::IpAddr>,
    /// Digest credentials: a 401/407 to a request toward this trunk is answered with them
    /// once on the PBX's behalf (RFC 3261 §22.2). None: challenges are refused (403).
    pub credentials: Option<Credentials>,
    /// Call admission limits (calls in either direction through this trunk).
    pub limits: CallLimits,
    /// The SBC's outside address used toward this trunk (one of the outside listeners);
    /// None: the outside side's default.
    pub local: Option<TrunkLocal>,
    /// Host of the From URI on calls to this trunk (the carrier's account domain); None: the
    /// SBC's outside address.
    pub from_domain: Option<String>,
    /// Applied to calls toward this trunk (numbers as the carrier wants them).
    pub outbound: Manipulation,
    /// Applied to calls from this trunk toward the PBX.
    pub inbound: Manipulation,
    /// Who answers the trunk's digest challenges (see `auth_passthrough.rs`).
    pub auth: TrunkAuth,
    /// What a 3xx from this trunk does: recursion by the SBC, or relayed to the PBX.
    pub redirect: super::Redirect,
    /// A 3xx relayed to the PBX has its Contacts rewritten to the SBC's address.
    pub hide_redirect_contacts: bool,
    /// Media encryption toward this trunk (`srtp_policy.rs`).
    pub srtp: crate::srtp::SrtpPolicy,
    /// Codecs and T.38 toward this trunk (`media_policy.rs`).
    pub media: super::MediaPolicy,
}

/// Who answers a trunk's digest challenges (RFC 3261 §22). No default here: the
/// configuration resolves an absent `auth` from the trunk's credentials and number rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkAuth {
    /// The SBC answers with the trunk's credentials; without credentials a challenge becomes
    /// 403 toward the PBX (a 401/407 without its challenge would be invalid).
    Sbc,
    /// Challenges and credentials cross: the 401/407 reaches the other side with its
    /// `WWW-Authenticate`/`Proxy-Authenticate` intact and the retry is relayed with its
    /// `Authorization`/`Proxy-Authorization`. The Request-URI crosses unchanged, because the
    /// digest `uri=` is computed over the Request-URI the challenger sees.
    Passthrough,
}

/// What the SBC does with a REGISTER from the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegisterPolicy {
    /// 405 Method Not Allowed with `Allow`.
    #[default]
    Reject,
    /// Registered at a trunk on the PBX's behalf (see `register_relay.rs`).
    Relay {
        /// The trunk registered at (index into `trunks`).
        trunk: usize,
        /// Most bindings kept at once; REGISTERs for new AORs beyond it get 503.
        max_bindings: usize,
    },
}

impl TrunkConfig {
    /// A trunk with no credentials, limits or rules.
    pub fn new(name: impl Into<String>, target: Target) -> Self {
        Self {
            name: name.into(),
            target,
            alternates: Vec::new(),
            sources: Vec::new(),
            credentials: None,
            limits: CallLimits::default(),
            local: None,
            from_domain: None,
            outbound: Manipulation::default(),
            inbound: Manipulation::default(),
            auth: TrunkAuth::Sbc,
            redirect: super::Redirect::default(),
            hide_redirect_contacts: false,
            srtp: crate::srtp::SrtpPolicy::default(),
            media: super::MediaPolicy::default(),
        }
    }
}

/// B2BUA configuration.
#[derive(Debug, Clone)]
pub struct B2buaConfig {
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// The SBC on the PBX side.
    pub inside: LocalAddr,
    /// The SBC on the carrier side.
    pub outside: LocalAddr,
    /// Every listener: bound address → the address written into messages for peers that
    /// reach the SBC there (so a dialog stays on the address its peer used).
    pub listeners: Vec<(SocketAddr, LocalAddr)>,
    /// Where calls from the carrier go when no inbound route takes their DID.
    pub pbx: Target,
    /// The carrier trunks. Their positions are the trunk indices used by routes, events and
    /// [`super::B2bua::set_trunk_usable`].
    pub trunks: Vec<TrunkConfig>,
    /// Outbound routes, first match by called number wins. Empty: every call tries all trunks
    /// in configured order. A call no route takes is refused with 404.
    pub routes: Vec<OutboundRoute>,
    /// Inbound routes, first match by DID wins; no match: `pbx`.
    pub inbound: Vec<InboundRoute>,
    /// Call admission limits of the whole SBC.
    pub limits: CallLimits,
    /// `Retry-After` seconds on the 503 of a call refused by admission control.
    pub retry_after_s: u32,
    /// `User-Agent` / `Server` value.
    pub user_agent: String,
    /// Header names (lower case) copied from one leg to the other; everything else is dropped.
    pub pass_headers: Vec<String>,
    /// Longest call; ended with BYE on both legs after this (None: unlimited).
    pub max_call_duration: Option<Duration>,
    /// Digest authentication required of the PBX's new requests (None: the ACL alone).
    pub pbx_auth: Option<super::PbxAuthConfig>,
    /// Session timers (RFC 4028), negotiated and run per leg.
    pub session_timer: super::SessionTimerConfig,
    /// Most redirects (3xx) one call follows.
    pub max_redirects: u8,
    /// Hard caps on transactions and stored message bytes (`caps.rs`).
    pub caps: super::Caps,
    /// What of SDP crosses, and the SBC's own addresses (refused as SDP targets).
    pub sdp: crate::sdp::SdpPolicy,
    /// REGISTER from the PBX: rejected or relayed to a trunk.
    pub pbx_register: RegisterPolicy,
    /// Most relayed challenges remembered at once while the challenged side's retry is
    /// awaited (each for 64·T1); beyond it the oldest is forgotten (its retry starts a new
    /// outside dialog and is challenged again).
    pub max_pending_challenges: usize,
    /// Media encryption toward the PBX (`srtp_policy.rs`).
    pub pbx_srtp: crate::srtp::SrtpPolicy,
    /// Codecs and T.38 toward the PBX (`media_policy.rs`).
    pub pbx_media: super::MediaPolicy,
}

impl B2buaConfig {
    /// A configuration with the core's defaults around the four things every deployment
    /// names: the SBC's address on each side, the PBX and the trunks. The SBC's own addresses
    /// are refused as SDP targets; no routes (every call tries the trunks in order), no
    /// admission limits, no PBX authentication, REGISTER from the PBX rejected. The daemon
    /// fills every field from its config file instead; tests, fuzzing and benchmarks start
    /// here and change what they are about.
    pub fn new(
        inside: LocalAddr,
        outside: LocalAddr,
        pbx: Target,
        trunks: Vec<TrunkConfig>,
    ) -> Self {
        Self {
            timers: TimerConfig::default(),
            sdp: crate::sdp::SdpPolicy {
                own_addresses: vec![inside.addr.ip(), outside.addr.ip()],
                ..crate::sdp::SdpPolicy::default()
            },
            inside,
            outside,
            listeners: Vec::new(),
            pbx,
            trunks,
            routes: Vec::new(),
            inbound: Vec::new(),
            limits: CallLimits::default(),
            retry_after_s: 5,
            user_agent: "sbc".into(),
            pass_headers: Self::default_pass_headers(),
            max_call_duration: None,
            pbx_auth: None,
            session_timer: super::SessionTimerConfig::default(),
            max_redirects: 5,
            caps: super::Caps::default(),
            pbx_register: RegisterPolicy::Reject,
            max_pending_challenges: 1000,
            pbx_srtp: crate::srtp::SrtpPolicy::default(),
            pbx_media: super::MediaPolicy::default(),
        }
    }

    /// The default header allowlist: identity, privacy, diversion, reason, capabilities,
    /// Retry-After (kept on 503) and Min-Expires (mandatory on 423). `Supported`, `Require` and
    /// the session timer headers are the SBC's own on each leg (`extensions.rs`), never copied.
    pub fn default_pass_headers() -> Vec<String> {
        [
            "p-asserted-identity",
            "p-preferred-identity",
            "privacy",
            "diversion",
            "reason",
            "allow",
            "accept",
            "retry-after",
            "unsupported",
            "min-expires",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// The SBC's address on `side`.
    pub fn local(&self, side: crate::net::Side) -> LocalAddr {
        match side {
            crate::net::Side::Inside => self.inside,
            crate::net::Side::Outside => self.outside,
        }
    }
}
