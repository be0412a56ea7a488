//! The receive-path policy of the [`Sbc`] core with simulated time: one behaviour per file.
//! A PBX inside on 10.0.0.0/24, one carrier trunk outside; every message goes through
//! [`Sbc::handle_datagram`] exactly as the driver feeds it.

mod acl;
mod answers;
mod cluster_bans;
mod denylist;
mod drain;
mod flood;
mod overload;
mod reconfigure;
mod registration_lease;
mod rfc4475;
mod shards;
mod user_agent;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::*;
use crate::{
    b2bua::{
        B2buaConfig, Caps, LocalAddr, RegisterPolicy, SessionTimerConfig, Target, TrunkConfig,
    },
    health::HealthConfig,
    media::SimMedia,
    net::{Side, TransportKind},
    register::RegConfig,
    sip::Limits,
    transaction::TimerConfig,
};

const PBX: &str = "10.0.0.2:5060";
const CARRIER: &str = "198.51.100.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn peer(side: Side, a: &str) -> Peer {
    Peer {
        side,
        transport: TransportKind::Udp,
        addr: addr(a),
        conn: None,
        local: None,
    }
}

fn b2bua_config() -> B2buaConfig {
    B2buaConfig {
        timers: TimerConfig::default(),
        inside: LocalAddr {
            addr: addr("10.0.0.1:5060"),
            transport: TransportKind::Udp,
        },
        outside: LocalAddr {
            addr: addr("203.0.113.1:5080"),
            transport: TransportKind::Udp,
        },
        pbx: Target {
            addr: addr(PBX),
            transport: TransportKind::Udp,
        },
        trunks: vec![TrunkConfig::new(
            "carrier",
            Target {
                addr: addr(CARRIER),
                transport: TransportKind::Udp,
            },
        )],
        routes: Vec::new(),
        inbound: Vec::new(),
        listeners: Vec::new(),
        limits: crate::limit::CallLimits::default(),
        retry_after_s: 5,
        user_agent: "sbc-test".into(),
        pass_headers: B2buaConfig::default_pass_headers(),
        max_call_duration: None,
        pbx_auth: None,
        session_timer: SessionTimerConfig::default(),
        max_redirects: 5,
        caps: Caps::default(),
        sdp: crate::sdp::SdpPolicy::default(),
        pbx_register: RegisterPolicy::Reject,
        max_pending_challenges: 1000,
        pbx_srtp: crate::srtp::SrtpPolicy::default(),
        pbx_media: crate::b2bua::MediaPolicy::default(),
    }
}

/// The configuration of the lab: no registration, no health check, bans after a burst of 3
/// for 60 s, `friendly-scanner` refused.
fn config() -> SbcConfig {
    SbcConfig {
        b2bua: b2bua_config(),
        acl: AclConfig {
            inside: vec!["10.0.0.0/24".parse().expect("literal")],
            outside: vec![addr(CARRIER).ip()],
            peers: vec![addr(PBX).ip()],
            user_agent_deny: vec!["friendly-scanner".into()],
            deny: Vec::new(),
        },
        guard: GuardConfig {
            rate: 1,
            burst: 2,
            ban: Duration::from_secs(60),
            ..GuardConfig::default()
        },
        // Short, so the tests' waits stay readable (the rule is the same at any scale).
        overload: crate::overload::OverloadConfig {
            target: Duration::from_millis(50),
            interval: Duration::from_millis(100),
        },
        trunks: vec![TrunkProxy {
            name: "carrier".into(),
            proxy: CARRIER.into(),
            static_addr: Some(addr(CARRIER)),
            transport: TransportKind::Udp,
        }],
        registrations: Vec::new(),
        health: Vec::new(),
        registrations_held: false,
    }
}

/// A registration and an OPTIONS check toward the carrier.
fn with_registration_and_health(mut c: SbcConfig) -> SbcConfig {
    let carrier = peer(Side::Outside, CARRIER);
    c.registrations = vec![TrunkRegistration {
        trunk: "carrier".into(),
        peer: carrier,
        cfg: RegConfig {
            user: "4930123".into(),
            domain: "carrier.example".into(),
            local: addr("203.0.113.1:5080"),
            transport: TransportKind::Udp,
            expires: 600,
            credentials: None,
            timers: TimerConfig::default(),
            user_agent: "sbc-test".into(),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
        },
    }];
    c.health = vec![TrunkHealth {
        trunk: "carrier".into(),
        index: 0,
        peer: carrier,
        cfg: HealthConfig {
            target: addr(CARRIER),
            local: addr("203.0.113.1:5080"),
            transport: TransportKind::Udp,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            up_after: 1,
            down_after: 3,
            timers: TimerConfig::default(),
            user_agent: "sbc-test".into(),
        },
    }];
    c
}

/// The core, the real media table (its commands executed in memory) and the simulated clock.
struct Lab {
    sbc: Sbc,
    media: SimMedia,
    now: Instant,
}

impl Lab {
    fn new(cfg: SbcConfig) -> Self {
        let now = crate::test_origin();
        Self {
            sbc: Sbc::new(cfg, Rng::from_test_seed(11), now),
            media: SimMedia::new(
                addr("10.0.0.1:0").ip(),
                addr("203.0.113.1:0").ip(),
                10_000,
                20_000,
            ),
            now,
        }
    }

    /// Delivers `text` (LF line ends) from `from`.
    fn deliver(&mut self, from: Peer, text: &str) -> Received {
        self.deliver_waited(from, text, Duration::ZERO)
    }

    /// Runs `f` on the core with the media table at the current time, then executes what it
    /// asked of the relay (as the daemon's driver does after each input).
    fn with_media<R>(
        &mut self,
        f: impl FnOnce(&mut Sbc, Instant, &mut crate::media::MediaTable) -> R,
    ) -> R {
        let now = self.now;
        self.media.drive(now, |t| f(&mut self.sbc, now, t))
    }

    /// Delivers `text` from `from` after it `waited` in the shard's queue.
    fn deliver_waited(&mut self, from: Peer, text: &str, waited: Duration) -> Received {
        let msg = Message::parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default())
            .unwrap_or_else(|e| panic!("test message does not parse: {e}\n{text}"));
        let now = self.now;
        self.media
            .drive(now, |t| self.sbc.handle_datagram(now, from, msg, waited, t))
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.media.tick(self.now);
        let now = self.now;
        self.media.drive(now, |t| self.sbc.handle_timeout(now, t));
    }

    /// Everything sent since the last call.
    fn sent(&mut self) -> Vec<(Peer, Message)> {
        std::iter::from_fn(|| self.sbc.poll_transmit())
            .map(|t| {
                let m = Message::parse(t.data, &Limits::default()).expect("the SBC sends SIP");
                (t.to, m)
            })
            .collect()
    }

    /// Every event since the last call.
    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.sbc.poll_event()).collect()
    }
}

/// An out-of-dialog OPTIONS (answered by the B2BUA itself or relayed: either way it sends
/// something, which is what the drop tests watch for).
fn options(from: &str, user_agent: Option<&str>) -> String {
    let ua = user_agent.map_or(String::new(), |u| format!("User-Agent: {u}\n"));
    format!(
        "OPTIONS sip:sbc@10.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKopt1\n\
         Max-Forwards: 70\n\
         From: <sip:probe@{from}>;tag=p1\n\
         To: <sip:sbc@10.0.0.1>\n\
         Call-ID: opt-1@{from}\n\
         CSeq: 1 OPTIONS\n\
         {ua}Content-Length: 0\n\n"
    )
}

/// A 200 answering `req` the way a registrar or a proxy would: its Via, From, Call-ID and
/// CSeq, a To tag, and `extra` headers.
fn ok_for(req: &Message, extra: &str) -> String {
    let text = String::from_utf8_lossy(req.as_bytes()).to_string();
    let mut out = String::from("SIP/2.0 200 OK\n");
    for line in text.split("\r\n").skip(1) {
        let lower = line.to_ascii_lowercase();
        if ["via:", "v:", "from:", "f:", "call-id:", "i:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(line);
            out.push('\n');
        } else if lower.starts_with("to:") || lower.starts_with("t:") {
            out.push_str(line);
            out.push_str(";tag=reg1\n");
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\n\n");
    out
}
