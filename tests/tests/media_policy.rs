//! Media policy end to end (`codec_policy.rs`, `t38.rs`), the real `sbc` between SIPp as the
//! PBX and SIPp as the carrier in the namespace lab:
//! 1. a trunk's codec list strips G.722 and puts PCMA first in the offer the carrier receives
//!    (its SIP on the carrier's link), and the answer reaches the PBX filtered the same way;
//! 2. T.38 both ways: the carrier re-INVITEs to `m=image … udptl t38`, the PBX accepts, and
//!    UDPTL datagrams cross the relay in both directions (tshark's UDPTL dissector on each
//!    peer's link); then the PBX goes back to audio, re-INVITEs to T.38 again, the carrier
//!    refuses with 488, the call continues on G.711: the carrier's RTP reaches the PBX's audio
//!    port again, not the refused offer's fax port.

mod media_common;

use std::{
    net::SocketAddr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use media_common::{
    MediaLab,
    scripts::{
        CARRIER_MEDIA, PBX_AUDIO, carrier_call, patch_trunk, pause, pbx_answered,
        pbx_call_checking, pbx_in_dialog, pbx_invite, recv_checked, respond, run_pair,
        run_pair_with, scenario, sdp, sdp_audio,
    },
};
use sbc_e2e::capture::Capture;

/// The PBX's fax port written in its T.38 SDP.
const PBX_FAX: u16 = 4002;
/// UDPTL datagrams each side sends.
const UDPTL_N: u16 = 20;

fn sdp_t38(port: u16) -> String {
    format!(
        "v=0\no=peer 1 [cseq] IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=image {port} udptl t38\na=T38FaxVersion:0\na=T38MaxBitRate:14400\na=T38FaxRateManagement:transferredTCF\na=T38FaxMaxBuffer:262\na=T38FaxMaxDatagram:176\na=T38FaxUdpEC:t38UDPRedundancy\n"
    )
}

const PCMA_MAPS: &str =
    "a=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n";

#[test]
fn codec_filter_strips_g722_and_puts_pcma_first_toward_the_carrier() {
    if !sbc_e2e::require_root("media_policy") {
        return;
    }
    let lab = MediaLab::start("smpc", "xdp = \"off\"");
    patch_trunk(&lab, r#","codecs":["PCMA","PCMU","telephone-event"]"#);
    let cap = Capture::start_on(&lab.lab.carrier, &["car0"], "udp port 5060").expect("capture");
    let wide = sdp_audio(
        PBX_AUDIO,
        "9 0 8 101",
        "a=rtpmap:9 G722/8000\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n",
    );
    let caller = pbx_call_checking(&wide, &["m=audio [0-9]+ RTP/AVP 8 101"], &pause(300), 2);
    let callee = carrier_call(
        &["m=audio [0-9]+ RTP/AVP 8 0 101[[:space:]]"],
        &sdp_audio(CARRIER_MEDIA, "8 101", PCMA_MAPS),
    );
    run_pair(&lab, &callee, &caller);
    thread::sleep(Duration::from_millis(300));
    let pcap = cap.stop();
    let wire = String::from_utf8_lossy(&pcap);
    assert!(
        wire.contains("RTP/AVP 8 0 101\r\n"),
        "PCMA first on the carrier's wire"
    );
    assert!(!wire.contains("G722"), "G.722 never reaches the carrier");
    assert!(wire.contains("a=fmtp:101 0-16\r\n") && wire.contains("a=ptime:20\r\n"));
}

/// A UDPTL datagram (T.38 Annex D): sequence number `seq`, a primary IFP packet with a CNG
/// indication, no redundancy.
fn udptl(seq: u16) -> [u8; 6] {
    let [hi, lo] = seq.to_be_bytes();
    [hi, lo, 0x01, 0x02, 0x00, 0x00]
}

/// Waits until the call's media session has the PBX's fax answer (its SDP port `PBX_FAX`)
/// and returns the relay's inside and outside endpoints.
fn fax_session(lab: &MediaLab) -> (SocketAddr, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let ids = lab.json("GET", "/api/v1/media/sessions", None, 200);
        if let Some(id) = ids
            .as_array()
            .and_then(|a| a.first())
            .and_then(|v| v.as_u64())
        {
            let v = lab.json("GET", &format!("/api/v1/media/sessions/{id}"), None, 200);
            let s = &v["streams"][0];
            if s["inside"]["sdp"].as_str() == Some(&format!("198.18.1.2:{PBX_FAX}")) {
                let ep = |side: &str| {
                    SocketAddr::new(
                        s[side]["relay"]
                            .as_str()
                            .expect("relay")
                            .parse()
                            .expect("ip"),
                        u16::try_from(s[side]["rtp_port"].as_u64().expect("port")).expect("port"),
                    )
                };
                return (ep("inside"), ep("outside"));
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("no T.38 session within 15 s");
}

/// `tshark -r` over `pcap` with the UDP datagrams from `src` to `dst` decoded as UDPTL:
/// their UDPTL sequence numbers.
fn udptl_seqs(pcap: &[u8], src: &str, dst: &str) -> Vec<u16> {
    let file = std::env::temp_dir().join(format!("{}.pcap", sbc_e2e::netns::unique("mpu")));
    std::fs::write(&file, pcap).expect("write pcap");
    // The relay's ports are not known here: decode every non-SIP datagram between the two
    // addresses as UDPTL (the peers send nothing else in that phase of the call).
    let ports = tshark_fields(
        &file,
        &format!("udp && ip.src=={src} && ip.dst=={dst} && !sip"),
        "udp.dstport",
    );
    let mut seqs = Vec::new();
    let mut seen_ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    seen_ports.sort_unstable();
    seen_ports.dedup();
    for port in seen_ports {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&file)
            .args(["-d", &format!("udp.port=={port},t38")])
            .args([
                "-Y",
                &format!("t38 && ip.src=={src} && ip.dst=={dst} && udp.dstport=={port}"),
            ])
            .args(["-T", "fields", "-e", "t38.seq_number"])
            .output()
            .expect("tshark -r");
        seqs.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u16>().ok()),
        );
    }
    let _ = std::fs::remove_file(&file);
    seqs
}

fn tshark_fields(file: &std::path::Path, filter: &str, field: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-e", field])
        .output()
        .expect("tshark -r");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// RTP packets in `pcap` from `src` to `dst` port `port` (decoded as RTP).
fn rtp_to(pcap: &[u8], src: &str, dst: &str, port: u16) -> usize {
    let file = std::env::temp_dir().join(format!("{}.pcap", sbc_e2e::netns::unique("mpr")));
    std::fs::write(&file, pcap).expect("write pcap");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-d", &format!("udp.port=={port},rtp")])
        .args([
            "-Y",
            &format!("rtp.version == 2 && ip.src=={src} && ip.dst=={dst} && udp.dstport=={port}"),
        ])
        .args(["-T", "fields", "-e", "rtp.seq"])
        .output()
        .expect("tshark -r");
    let _ = std::fs::remove_file(&file);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn t38_both_ways_udptl_relayed_and_a_refused_switch_falls_back_to_g711() {
    if !sbc_e2e::require_root("media_policy") {
        return;
    }
    let lab = MediaLab::start("smpt", "xdp = \"off\"");
    let in_cap = Capture::start_on(&lab.lab.pbx, &["pbx0"], "udp").expect("capture pbx");
    let out_cap = Capture::start_on(&lab.lab.carrier, &["car0"], "udp").expect("capture carrier");
    let audio_pbx = sdp_audio(PBX_AUDIO, "8 101", PCMA_MAPS);
    let audio_carrier = sdp_audio(CARRIER_MEDIA, "8 101", PCMA_MAPS);
    let ack = |cseq: u32| {
        format!(
            "<send><![CDATA[\nACK [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: pbx <sip:100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n[last_To:]\nCall-ID: [call_id]\nCSeq: {cseq} ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
        )
    };
    let caller = scenario(
        "pbx",
        &[
            pbx_invite(&audio_pbx),
            pbx_answered(&[]),
            ack(1),
            // The carrier switches to fax: accepted with the PBX's fax port.
            recv_checked("request=\"INVITE\"", &["m=image [0-9]+ udptl t38", "T38FaxRateManagement:transferredTCF"]),
            respond(200, "OK", Some(&sdp_t38(PBX_FAX)), false),
            "<recv request=\"ACK\"/>\n".to_owned(),
            // The test's sockets exchange UDPTL meanwhile (`fax_session`).
            pause(3000),
            // Back to audio.
            pbx_in_dialog("INVITE", 2, sdp(&audio_pbx)),
            "<recv response=\"100\" optional=\"true\"/>\n<recv response=\"200\"/>\n".to_owned(),
            ack(2),
            pause(300),
            // Fax again from the PBX side: the carrier refuses.
            pbx_in_dialog("INVITE", 3, sdp(&sdp_t38(PBX_FAX))),
            "<recv response=\"100\" optional=\"true\"/>\n<recv response=\"488\"/>\n".to_owned(),
            "<send><![CDATA[\nACK [next_url] SIP/2.0\n[last_Via:]\n[routes]\nFrom: pbx <sip:100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n[last_To:]\nCall-ID: [call_id]\nCSeq: 3 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n".to_owned(),
            pause(2500),
            pbx_in_dialog("BYE", 4, None),
            "<recv response=\"200\"/>\n".to_owned(),
        ]
        .concat(),
    );
    let callee_invite = format!(
        "<send retrans=\"500\"><![CDATA[\nINVITE [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: <sip:peer@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]\nTo: [$remote_from]\nCall-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:peer@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: [len]\n\n{}]]></send>\n",
        sdp_t38(CARRIER_MEDIA)
    );
    let callee = scenario(
        "carrier",
        &[
            "<recv request=\"INVITE\" rrs=\"true\"><action><ereg regexp=\".*\" search_in=\"hdr\" header=\"From:\" check_it=\"true\" assign_to=\"remote_from\"/></action></recv>\n".to_owned(),
            respond(200, "OK", Some(&audio_carrier), true),
            "<recv request=\"ACK\"/>\n".to_owned(),
            pause(300),
            callee_invite,
            "<recv response=\"100\" optional=\"true\"/>\n".to_owned(),
            recv_checked("response=\"200\"", &["m=image [0-9]+ udptl t38", "T38FaxUdpEC:t38UDPRedundancy"]),
            "<send><![CDATA[\nACK [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: <sip:peer@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]\nTo: [$remote_from]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n".to_owned(),
            "<recv request=\"INVITE\"/>\n".to_owned(),
            respond(200, "OK", Some(&audio_carrier), false),
            "<recv request=\"ACK\"/>\n".to_owned(),
            recv_checked("request=\"INVITE\"", &["m=image [0-9]+ udptl t38"]),
            respond(488, "Not Acceptable Here", None, false),
            "<recv request=\"ACK\"/>\n".to_owned(),
            pause(200),
            "<nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/g711a.pcap\"/></action></nop>\n".to_owned(),
            "<recv request=\"BYE\"/>\n".to_owned(),
            respond(200, "OK", None, false),
        ]
        .concat(),
    );
    // The fax peers behind the SDP's fax ports (SIPp's own media sockets are at -mp).
    let pbx_fax = lab.socket(true, &format!("198.18.1.2:{PBX_FAX}"));
    let carrier_fax = lab.socket(false, &format!("198.18.2.2:{CARRIER_MEDIA}"));
    run_pair_with(&lab, &callee, &caller, || {
        let (in_relay, out_relay) = fax_session(&lab);
        for i in 0..UDPTL_N {
            pbx_fax
                .send_to(&udptl(1000 + i), in_relay)
                .expect("send UDPTL");
            carrier_fax
                .send_to(&udptl(2000 + i), out_relay)
                .expect("send UDPTL");
            thread::sleep(Duration::from_millis(20));
        }
    });
    drop((pbx_fax, carrier_fax));
    thread::sleep(Duration::from_millis(500));
    let at_pbx = in_cap.stop();
    let at_carrier = out_cap.stop();

    let want = |first: u16| (first..first + UDPTL_N).collect::<Vec<_>>();
    let mut to_carrier = udptl_seqs(&at_carrier, "198.18.2.1", "198.18.2.2");
    to_carrier.retain(|s| (1000..1000 + UDPTL_N).contains(s));
    assert_eq!(
        to_carrier,
        want(1000),
        "the PBX's UDPTL reached the carrier"
    );
    let mut to_pbx = udptl_seqs(&at_pbx, "198.18.1.1", "198.18.1.2");
    to_pbx.retain(|s| (2000..2000 + UDPTL_N).contains(s));
    assert_eq!(to_pbx, want(2000), "the carrier's UDPTL reached the PBX");

    let audio = rtp_to(&at_pbx, "198.18.1.1", "198.18.1.2", PBX_AUDIO);
    let fax_port = rtp_to(&at_pbx, "198.18.1.1", "198.18.1.2", PBX_FAX);
    assert!(
        audio > 50,
        "after the refused T.38 switch the carrier's G.711 reaches the PBX's audio port ({audio} packets)"
    );
    assert_eq!(fax_port, 0, "nothing goes to the refused offer's fax port");
}
