//! A routing loop through two SBC instances ends (RFC 3261 §16.6 step 3, §8.2.2.1 as a B2BUA
//! applies it): each SBC decrements Max-Forwards on the leg it creates instead of starting
//! again at 70, so an INVITE sent around A → B → A → … reaches 0 and is answered 483 Too Many
//! Hops, which travels back to the caller. Before that rule the loop only stopped when the
//! call admission limits refused it (503), after holding a call per hop.
//!
//! Both SBCs run in the lab's SBC namespace on addresses of their own: A's trunk is B's inside
//! listener, and B's trunk is A's inside listener.

use std::{
    net::UdpSocket,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sbc_lab::{http, lab::Lab, netns, process::Owned};

/// Hops the test's INVITE allows (a short loop keeps the test quick).
const MAX_FORWARDS: u32 = 20;

struct Instance {
    admin: &'static str,
    config: std::path::PathBuf,
    _process: Owned,
}

impl Instance {
    fn start(lab: &Lab, name: &str, admin: &'static str, text: &str) -> Self {
        let config = std::env::temp_dir().join(format!("{}-{name}.toml", lab.id));
        std::fs::write(&config, text).expect("write config");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.sbc))
            .arg(sbc_e2e::sbc_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("SBC_LOG", "info")
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sbc");
        let mut process = Owned::new(name, child);
        let me = |process| Self {
            admin,
            config: config.clone(),
            _process: process,
        };
        for _ in 0..100 {
            if Self::get(lab, admin, "/readyz").is_some_and(|r| r.status == 200) {
                return me(process);
            }
            assert!(process.running(), "sbc {name} exited during start-up");
            thread::sleep(Duration::from_millis(100));
        }
        panic!("sbc {name} not ready within 10 s");
    }

    fn get(lab: &Lab, admin: &str, path: &str) -> Option<http::Response> {
        let _in = netns::enter(&lab.sbc).expect("enter sbc netns");
        http::get(admin.parse().expect("literal"), path)
    }

    fn metrics(&self, lab: &Lab) -> String {
        Self::get(lab, self.admin, "/metrics")
            .expect("metrics")
            .body
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A config for one instance: inside/outside listeners and relay addresses, the PBX it
/// serves, the one trunk it sends to.
fn config(
    instance: &str,
    inside: &str,
    outside: &str,
    pbx: &str,
    trunk: &str,
    admin: &str,
) -> String {
    let ip = |a: &str| a.rsplit_once(':').expect("host:port").0.to_owned();
    format!(
        r#"[general]
instance = "{instance}"
[inside]
udp = ["{inside}"]
media_address = "{in_ip}"
[outside]
udp = ["{outside}"]
media_address = "{out_ip}"
[pbx]
address = "{pbx}"
allow = ["198.18.1.0/24", "198.18.2.0/24"]
[[trunk]]
name = "next"
proxy = "{trunk}"
[media]
xdp = "off"
[admin]
listen = "{admin}"
"#,
        in_ip = ip(inside),
        out_ip = ip(outside),
    )
}

/// The number in `sbc_calls_started_total` summed over its labels.
fn calls_started(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("sbc_calls_started_total"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn a_loop_through_two_sbcs_ends_in_483() {
    if !sbc_e2e::require_root("sip_loop") {
        return;
    }
    let lab = Lab::up("slp").expect("lab up");
    // B's own addresses next to A's on the SBC namespace's two links.
    for (ifname, addr) in [("in0", "198.18.1.5/24"), ("out0", "198.18.2.5/24")] {
        let ok = Command::new("ip")
            .args([
                "netns", "exec", &lab.sbc, "ip", "addr", "add", addr, "dev", ifname,
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip addr add {addr}");
    }
    let a = Instance::start(
        &lab,
        "a",
        "127.0.0.1:8080",
        &config(
            &format!("{}a", lab.id),
            "198.18.1.1:5060",
            "198.18.2.1:5060",
            "198.18.1.2:5060",
            "198.18.2.5:5060",
            "127.0.0.1:8080",
        ),
    );
    let b = Instance::start(
        &lab,
        "b",
        "127.0.0.1:8081",
        &config(
            &format!("{}b", lab.id),
            "198.18.2.5:5060",
            "198.18.1.5:5060",
            "198.18.2.1:5060",
            "198.18.1.1:5060",
            "127.0.0.1:8081",
        ),
    );

    // The PBX calls a number; A routes it to its trunk, which is B, whose trunk is A, …
    let socket = {
        let _in = netns::enter(&lab.pbx).expect("enter pbx netns");
        UdpSocket::bind("198.18.1.2:5060").expect("bind pbx")
    };
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let call_id = format!("loop-{}@198.18.1.2", lab.id);
    let head = |method: &str, mf: u32| {
        format!(
            "{method} sip:5551000@198.18.1.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bKloop1;rport\r\n\
             Max-Forwards: {mf}\r\n\
             From: <sip:100@198.18.1.2>;tag=loopa\r\n\
             To: <sip:5551000@198.18.1.1>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\n"
        )
    };
    let sdp = "v=0\r\no=- 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "{}Contact: <sip:100@198.18.1.2:5060>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        head("INVITE", MAX_FORWARDS),
        sdp.len()
    );
    let dest = "198.18.1.1:5060";
    socket
        .send_to(invite.as_bytes(), dest)
        .expect("send INVITE");
    let started = Instant::now();
    let mut last_send = started;
    let mut final_status = None;
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(20) {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let status: Option<u16> = text
                    .strip_prefix("SIP/2.0 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|c| c.parse().ok());
                if let Some(s) = status.filter(|s| *s >= 200) {
                    final_status = Some((s, text.into_owned()));
                    break;
                }
            }
            Err(_) => {
                // Timer A on our side, bounded by the 20 s loop.
                if last_send.elapsed() > Duration::from_secs(1) {
                    socket.send_to(invite.as_bytes(), dest).expect("resend");
                    last_send = Instant::now();
                }
            }
        }
    }
    let (status, text) = final_status.expect("a final answer to the looping INVITE within 20 s");
    // The non-2xx final is acknowledged hop by hop (RFC 3261 §17.1.1.3).
    let to = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .expect("To in the answer")
        .to_owned();
    let ack = format!(
        "ACK sip:5551000@198.18.1.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bKloop1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@198.18.1.2>;tag=loopa\r\n{to}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(ack.as_bytes(), dest).expect("send ACK");
    assert_eq!(
        status, 483,
        "the loop must end in 483 Too Many Hops:\n{text}"
    );

    // Each hop was one call at one of the two SBCs: together no more hops than the INVITE
    // allowed, and every one of them ended.
    let mut hops = 0;
    let mut idle = false;
    for _ in 0..50 {
        let (ma, mb) = (a.metrics(&lab), b.metrics(&lab));
        hops = calls_started(&ma) + calls_started(&mb);
        idle = [&ma, &mb].iter().all(|m| {
            m.lines()
                .filter(|l| l.starts_with("sbc_calls_active{"))
                .all(|l| l.ends_with(" 0"))
        });
        if idle {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        (2..=u64::from(MAX_FORWARDS)).contains(&hops),
        "calls started across both SBCs: {hops} (Max-Forwards {MAX_FORWARDS})"
    );
    assert!(idle, "calls still active after the 483");
}
