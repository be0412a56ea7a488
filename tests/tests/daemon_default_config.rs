//! `sbc run` with no --config uses the shipped default: it binds the documented addresses,
//! becomes ready, counts SIP arriving on the inside, and exits 0 on SIGTERM.
//! Runs in a fresh network namespace so the fixed default ports never collide with anything.

use std::{net::UdpSocket, process::Stdio, time::Duration};

use nix::sys::signal::Signal;
use sbc_e2e::{http, netns::Netns, process::Owned};

#[test]
fn shipped_default_binds_documented_addresses_and_stops_on_sigterm() {
    if !sbc_e2e::require_root("daemon_default_config") {
        return;
    }
    let ns = Netns::new("sdd").expect("create netns");
    let child = ns
        .command(&sbc_e2e::sbc_bin().display().to_string())
        .arg("run")
        .current_dir(sbc_e2e::workspace_root())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sbc");
    let mut sbc = Owned::new("sbc", child);

    let _inside = ns.enter().expect("enter netns");
    let admin = "127.0.0.1:8080".parse().expect("literal");
    let mut ready = None;
    for _ in 0..100 {
        if let Some(r) = http::get(admin, "/readyz") {
            ready = Some(r);
            break;
        }
        assert!(sbc.running(), "sbc exited during start-up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = ready.expect("admin API reachable on 127.0.0.1:8080 within 10 s");
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(http::get(admin, "/healthz").expect("healthz").status, 200);

    // The documented SIP listeners exist: inside UDP and TCP on 5060, outside UDP on 5080.
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client
        .send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", "127.0.0.1:5060")
        .expect("send inside");
    client
        .send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", "127.0.0.1:5080")
        .expect("send outside");
    std::net::TcpStream::connect("127.0.0.1:5060").expect("inside TCP 5060 listening");
    let mut counted = false;
    for _ in 0..50 {
        let m = http::get(admin, "/metrics").expect("metrics");
        assert_eq!(m.status, 200);
        if m.body
            .contains("sbc_sip_received_total{side=\"inside\",transport=\"udp\"} 1")
            && m.body
                .contains("sbc_sip_received_total{side=\"outside\",transport=\"udp\"} 1")
        {
            counted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(counted, "datagrams to 5060 and 5080 not counted");
    let media = http::get(admin, "/api/v1/media").expect("media view");
    assert!(media.body.contains("\"state\":\"off\""), "{}", media.body);

    sbc.signal(Signal::SIGTERM);
    let status = sbc
        .wait_timeout(Duration::from_secs(10))
        .expect("sbc exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
}
