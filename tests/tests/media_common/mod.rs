//! Shared harness of the media end-to-end tests: the lab with the real `sbc` binary in its sbc
//! namespace, the admin API, RTP senders and receivers in the pbx and carrier namespaces.
//! Everything it starts (namespaces, processes, bpffs pins, config files) is removed on drop.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

pub mod phone;
pub mod scripts;

use std::{
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use sbc::{config::XdpMode, media::xdp::XdpRelay};
use sbc_e2e::{http, lab::Lab, netns, process::Owned};
use serde_json::Value;

/// Admin API of the SBC inside its namespace.
pub const ADMIN: &str = "127.0.0.1:8080";

/// A lab with the SBC running in it.
pub struct MediaLab {
    pub lab: Lab,
    pub instance: String,
    pub config: PathBuf,
    /// Bearer token sent with every admin request, when the config sets one.
    pub token: Option<String>,
    pub sbc: Option<Owned>,
    /// Pass-through XDP on the pbx and carrier veth ends: native redirect into a veth needs a
    /// program on the receiving end.
    _peers_xdp: Option<XdpRelay>,
}

impl MediaLab {
    /// Brings up a lab and starts `sbc` with `[media]` set to `media_toml`, relaying on the
    /// lab's IPv4 addresses.
    pub fn start(prefix: &str, media_toml: &str) -> Self {
        Self::start_full(prefix, false, media_toml, false, "", None)
    }

    /// The same, relaying on the lab's IPv6 addresses when `ipv6`.
    pub fn start_with(prefix: &str, ipv6: bool, media_toml: &str) -> Self {
        Self::start_full(prefix, ipv6, media_toml, false, "", None)
    }

    /// The same, with SIP over TCP on both sides (listeners, PBX and trunk) when `tcp`.
    pub fn start_with_transport(prefix: &str, media_toml: &str, tcp: bool) -> Self {
        Self::start_full(prefix, false, media_toml, tcp, "", None)
    }

    /// Like [`Self::start`], with extra `[admin]` keys and the token the harness should send.
    pub fn start_admin(
        prefix: &str,
        media_toml: &str,
        admin_toml: &str,
        token: Option<&str>,
    ) -> Self {
        Self::start_full(prefix, false, media_toml, false, admin_toml, token)
    }

    /// Like [`Self::start`], with whole extra sections (e.g. `[state]`) at the end of the
    /// configuration.
    pub fn start_with_sections(prefix: &str, media_toml: &str, sections: &str) -> Self {
        // The `[admin]` keys come last in the file: sections after them are their own.
        Self::start_full(prefix, false, media_toml, false, sections, None)
    }

    /// IPv6 media addresses when `ipv6`; SIP over TCP when `tcp`; extra `[admin]` keys and
    /// the token the harness sends.
    pub fn start_full(
        prefix: &str,
        ipv6: bool,
        media_toml: &str,
        tcp: bool,
        admin_toml: &str,
        token: Option<&str>,
    ) -> Self {
        Self::start_general(prefix, "", media_toml, admin_toml, token, ipv6, tcp)
    }

    /// [`Self::start_full`] with extra `[general]` keys (`general_toml`).
    pub fn start_general(
        prefix: &str,
        general_toml: &str,
        media_toml: &str,
        admin_toml: &str,
        token: Option<&str>,
        ipv6: bool,
        tcp: bool,
    ) -> Self {
        let (inside, outside) = if ipv6 {
            ("fd00:5bc:1::1", "fd00:5bc:2::1")
        } else {
            ("198.18.1.1", "198.18.2.1")
        };
        let sides = [
            format!("media_address = \"{inside}\""),
            format!("media_address = \"{outside}\""),
        ];
        let lab = Lab::up(prefix).expect("lab up");
        Self::start_lab(
            lab,
            general_toml,
            media_toml,
            admin_toml,
            token,
            &sides,
            tcp,
        )
    }

    /// Brings up a lab, lets `prepare` change it (e.g. add relay addresses to the SBC's
    /// interfaces), then starts `sbc` with `[inside]` and `[outside]` relaying on
    /// `sides` (each a `media_address` or `media_addresses` line) and `[media]` set to
    /// `media_toml`, over IPv4.
    pub fn start_sides(
        prefix: &str,
        media_toml: &str,
        sides: &[String; 2],
        prepare: impl FnOnce(&Lab),
    ) -> Self {
        let lab = Lab::up(prefix).expect("lab up");
        prepare(&lab);
        Self::start_lab(lab, "", media_toml, "", None, sides, false)
    }

    fn start_lab(
        lab: Lab,
        general_toml: &str,
        media_toml: &str,
        admin_toml: &str,
        token: Option<&str>,
        sides: &[String; 2],
        tcp: bool,
    ) -> Self {
        let [inside_media, outside_media] = sides;
        let (tcp_in, tcp_out, transport) = if tcp {
            (
                "tcp = [\"198.18.1.1:5060\"]",
                "tcp = [\"198.18.2.1:5060\"]",
                "transport = \"tcp\"",
            )
        } else {
            ("", "", "")
        };
        let instance = format!("t{}", lab.id);
        let shards = sbc_e2e::shards_toml(admin_toml.contains("[state]"));
        let config = std::env::temp_dir().join(format!("{instance}.toml"));
        let text = format!(
            r#"[general]
instance = "{instance}"
{shards}
{general_toml}
[inside]
udp = ["198.18.1.1:5060"]
{tcp_in}
{inside_media}
[outside]
udp = ["198.18.2.1:5060"]
{tcp_out}
{outside_media}
[pbx]
address = "198.18.1.2:5060"
allow = ["198.18.1.0/24"]
{transport}
[[trunk]]
name = "carrier"
proxy = "198.18.2.2:5060"
# Explicit: the scenarios check the Request-URI the SBC writes (topology hiding); without
# credentials the default would be pass-through (auth_passthrough.rs covers it).
auth = "sbc"
{transport}
[media]
interfaces = ["in0", "out0"]
{media_toml}
[admin]
listen = "{ADMIN}"
{admin_toml}
"#
        );
        std::fs::write(&config, text).expect("write config");
        // bpf_fib_lookup (the XDP program's next-hop resolution) requires forwarding enabled
        // on the ingress interface; see docs/media.md.
        for (fam, ifname) in [
            ("ipv4", "in0"),
            ("ipv4", "out0"),
            ("ipv6", "in0"),
            ("ipv6", "out0"),
        ] {
            let key = format!("net.{fam}.conf.{ifname}.forwarding=1");
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", &lab.sbc, "sysctl", "-qw", &key])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sysctl {key}");
        }
        // A veth passes locally sent packets with a partial (offloaded) UDP checksum, which no
        // packet from a real wire has and which an XDP rewrite cannot update incrementally:
        // make the peers compute full checksums, as a remote host's NIC would.
        for (ns, ifname) in [(&lab.pbx, "pbx0"), (&lab.carrier, "car0")] {
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ethtool -K {ifname} tx off");
        }
        let mut me = Self {
            lab,
            instance,
            config,
            token: token.map(str::to_owned),
            sbc: None,
            _peers_xdp: None,
        };
        me.peer_xdp();
        me.start_sbc();
        me
    }

    fn peer_xdp(&mut self) {
        let mut relay = XdpRelay::load(None, 1024).expect("load XDP for the peers");
        for (ns, ifname) in [(&self.lab.pbx, "pbx0"), (&self.lab.carrier, "car0")] {
            let _in = netns::enter(ns).expect("enter peer netns");
            relay
                .attach(ifname, XdpMode::Native)
                .expect("attach pass-through XDP to a peer");
        }
        self._peers_xdp = Some(relay);
    }

    /// Starts (or restarts) the SBC and waits until it is ready.
    pub fn start_sbc(&mut self) {
        let sbc =
            sbc_e2e::start_sbc_in(&self.lab.sbc, &self.config, "info,sbc::media=debug", || {
                self.get_opt("/readyz").is_some_and(|r| r.status == 200)
            });
        self.sbc = Some(sbc);
    }

    fn get_opt(&self, path: &str) -> Option<http::Response> {
        self.request("GET", path, None)
    }

    /// An admin request from inside the sbc namespace.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Option<http::Response> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        self.request_as(method, path, auth.as_deref(), body.map(str::as_bytes))
    }

    /// An admin request with the given `Authorization` value (or none).
    pub fn request_as(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&[u8]>,
    ) -> Option<http::Response> {
        let _in = netns::enter(&self.lab.sbc).expect("enter sbc netns");
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = authorization {
            headers.push(("Authorization", a));
        }
        http::request_with(
            ADMIN.parse().expect("literal"),
            method,
            path,
            &headers,
            body,
        )
    }

    /// `method path` that must succeed with `want`; returns the JSON body.
    pub fn json(&self, method: &str, path: &str, body: Option<&str>, want: u16) -> Value {
        let r = self
            .request(method, path, body)
            .unwrap_or_else(|| panic!("{method} {path}: admin API unreachable"));
        assert_eq!(r.status, want, "{method} {path}: {}", r.body);
        if r.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
    }

    /// The first media session the SBC lists once its answer is committed, waiting up to 15 s
    /// (a call placed by SIPp through the signaling path): (id, inside relay, outside relay)
    /// RTP addresses of its first stream.
    pub fn answered_session(&self) -> (u64, SocketAddr, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let ids = self.json("GET", "/api/v1/media/sessions", None, 200);
            if let Some(id) = ids
                .as_array()
                .and_then(|a| a.first())
                .and_then(|v| v.as_u64())
            {
                let v = self.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 200);
                if v["committed"] == true {
                    let ep = |side: &str| {
                        let e = &v["streams"][0][side];
                        SocketAddr::new(
                            e["relay"].as_str().expect("relay").parse().expect("ip"),
                            u16::try_from(e["rtp_port"].as_u64().expect("port")).expect("port"),
                        )
                    };
                    return (id, ep("inside"), ep("outside"));
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("no answered media session within 15 s");
    }

    /// `GET /api/v1/media`.
    pub fn media(&self) -> Value {
        self.json("GET", "/api/v1/media", None, 200)
    }

    /// The XDP program's `redirected` counter (0 without XDP).
    pub fn xdp_counter(&self, name: &str) -> u64 {
        self.media()["xdp_counters"][name].as_u64().unwrap_or(0)
    }

    /// Packets the userspace relay forwarded so far.
    pub fn userspace_packets(&self) -> u64 {
        self.media()["relay"]["userspace_packets"]
            .as_u64()
            .expect("userspace_packets")
    }

    /// Creates a session: offer from the PBX (`pbx_sdp`), answer from the carrier
    /// (`carrier_sdp`). Returns (id, inside relay, outside relay) RTP addresses.
    pub fn call(
        &self,
        pbx_sdp: SocketAddr,
        carrier_sdp: SocketAddr,
    ) -> (u64, SocketAddr, SocketAddr) {
        self.call_with_peers(pbx_sdp, carrier_sdp, "{}")
    }

    /// [`Self::call`] with the call's signaling peers as the call layer passes them (JSON
    /// object `{"inside": ip, "outside": ip, "trunk": name}`, each optional).
    pub fn call_with_peers(
        &self,
        pbx_sdp: SocketAddr,
        carrier_sdp: SocketAddr,
        peers: &str,
    ) -> (u64, SocketAddr, SocketAddr) {
        let offer = format!(
            r#"{{"from":"inside","streams":[{{"addr":"{}","rtp_port":{}}}],"peers":{peers}}}"#,
            pbx_sdp.ip(),
            pbx_sdp.port()
        );
        let a = self.json("POST", "/api/v1/media/sessions", Some(&offer), 201);
        let id = a["session"].as_u64().expect("session id");
        let answer = format!(
            r#"{{"from":"outside","streams":[{{"addr":"{}","rtp_port":{}}}]}}"#,
            carrier_sdp.ip(),
            carrier_sdp.port()
        );
        self.json(
            "PUT",
            &format!("/api/v1/media/sessions/{id}"),
            Some(&answer),
            200,
        );
        let ep = |side: &str| {
            let e = &a["streams"][0][side];
            SocketAddr::new(
                e["addr"].as_str().expect("addr").parse().expect("ip"),
                u16::try_from(e["rtp_port"].as_u64().expect("port")).expect("port"),
            )
        };
        (id, ep("inside"), ep("outside"))
    }

    /// A UDP socket bound in the pbx (`inside`) or carrier namespace.
    pub fn socket(&self, inside: bool, addr: &str) -> UdpSocket {
        let ns = if inside {
            &self.lab.pbx
        } else {
            &self.lab.carrier
        };
        let _in = netns::enter(ns).expect("enter peer netns");
        let s = UdpSocket::bind(addr).expect("bind peer socket");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        s
    }

    /// Kills the SBC with SIGKILL (a crash) and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut sbc) = self.sbc.take() {
            sbc.signal(nix::sys::signal::Signal::SIGKILL);
            sbc.wait_timeout(Duration::from_secs(5))
                .expect("sbc gone after SIGKILL");
        }
    }

    /// The instance's bpffs pin directory.
    pub fn pin_dir(&self) -> PathBuf {
        sbc::media::xdp::pin_dir(&self.instance)
    }
}

impl Drop for MediaLab {
    fn drop(&mut self) {
        if let Some(mut sbc) = self.sbc.take() {
            sbc.signal(nix::sys::signal::Signal::SIGTERM);
            let _ = sbc.wait_timeout(Duration::from_secs(5));
        }
        // Pinned links and maps outlive the process by design: remove this instance's.
        let _ = std::fs::remove_dir_all(self.pin_dir());
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A valid RTP packet (version 2, PCMU), 160 bytes of payload: a 20 ms frame.
pub fn rtp(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// What a receiver saw: sequence numbers in arrival order and the sources.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub seqs: Vec<u16>,
    /// RTP SSRC of each packet (whose stream it is).
    pub ssrcs: Vec<u32>,
    /// Datagram length of each packet.
    pub lens: Vec<usize>,
    pub sources: Vec<SocketAddr>,
    /// Arrival times relative to the receiver's start.
    pub at: Vec<Duration>,
}

impl Received {
    /// Whether the sequence numbers strictly increase (in order, no duplicates).
    pub fn in_order(&self) -> bool {
        self.seqs.windows(2).all(|w| w[1] > w[0])
    }
}

/// Receives on `socket` until `stop` is set (bounded by `limit`), recording what arrives.
pub fn receiver(socket: UdpSocket, stop: Arc<AtomicBool>, limit: Duration) -> JoinHandle<Received> {
    thread::spawn(move || {
        let start = Instant::now();
        let mut got = Received::default();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
            if let Ok((n, src)) = socket.recv_from(&mut buf)
                && n >= 12
            {
                got.seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
                got.ssrcs
                    .push(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
                got.lens.push(n);
                got.sources.push(src);
                got.at.push(start.elapsed());
            }
        }
        got
    })
}

/// Sends `count` RTP packets from `socket` to `to`, starting at `first_seq`: every 20 ms, and
/// every 10th time a burst of 5 back to back.
pub fn send_rtp(socket: &UdpSocket, to: SocketAddr, first_seq: u16, count: u16, ssrc: u32) {
    let mut seq = first_seq;
    let mut sent = 0;
    while sent < count {
        let burst = if sent % 50 == 45 { 5 } else { 1 };
        for _ in 0..burst.min(count - sent) {
            socket.send_to(&rtp(seq, ssrc), to).expect("send RTP");
            seq = seq.wrapping_add(1);
            sent += 1;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
