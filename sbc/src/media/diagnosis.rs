//! One-way-audio diagnosis: what the relay knows about each stream of a call, turned into the
//! answers operators look for — which side has sent nothing, whether the latch refused a
//! source (and which), SDP address versus observed source (NAT), fast path or userspace, and
//! when the last packet came. A pure function of the media snapshot ([`SessionView`]) and
//! the call's signaling peers, so every rule is unit-tested.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::view::{EndpointView, SessionView};

/// A peer that sent nothing for this long counts as silent now, milliseconds (RTP voice sends
/// every 20 ms; comfort noise at least every few hundred).
pub const SILENT_AFTER_MS: u64 = 3_000;

/// How the audio of a stream or a call fares (its diagnosis's verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioState {
    /// Both peers send.
    Ok,
    /// Only one peer sends.
    OneWay,
    /// Neither sends.
    NoAudio,
    /// Nothing flows, as both SDPs ask (hold or inactive).
    Held,
}

/// What is known about one peer of a stream.
#[derive(Debug, Clone, Serialize)]
pub struct PeerDiagnosis {
    /// `PBX` or `carrier`.
    pub who: &'static str,
    /// The relay port it should send to.
    pub relay: String,
    /// Its RTP address from SDP.
    pub sdp: Option<String>,
    /// The source the relay latched (where it now sends this peer's audio).
    pub latched: Option<String>,
    /// The peer's SIP source address.
    pub signaling: Option<String>,
    /// Packets accepted from it (userspace and XDP).
    pub packets: u64,
    /// Packets from it refused or dropped.
    pub dropped: u64,
    /// The last refused source and why.
    pub refused_from: Option<String>,
    /// See `refused_from`.
    pub refused_reason: Option<&'static str>,
    /// Milliseconds since its last accepted packet.
    pub last_packet_ms_ago: Option<u64>,
    /// Whether it sends now (a packet within [`SILENT_AFTER_MS`]).
    pub sending: bool,
    /// The SDP direction it asked for.
    pub sdp_direction: &'static str,
    /// Whether a NAT between it and the SBC is likely.
    pub nat_suspected: bool,
    /// The findings, in words.
    pub findings: Vec<String>,
}

/// The diagnosis of one stream (`m=` line).
#[derive(Debug, Clone, Serialize)]
pub struct StreamDiagnosis {
    /// Index in `m=` order.
    pub index: usize,
    /// `xdp` when the fast path carries it, else `userspace`.
    pub path: &'static str,
    /// The verdict.
    pub verdict: AudioState,
    /// The verdict in words.
    pub summary: String,
    /// The PBX side.
    pub inside: PeerDiagnosis,
    /// The carrier side.
    pub outside: PeerDiagnosis,
}

/// The diagnosis of a call's media session.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// The worst verdict of its streams.
    pub verdict: AudioState,
    /// In words.
    pub summary: String,
    /// Per stream.
    pub streams: Vec<StreamDiagnosis>,
}

fn ip_of(s: Option<&str>) -> Option<IpAddr> {
    s.and_then(|s| s.parse::<SocketAddr>().ok()).map(|a| a.ip())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            // RFC 1918, RFC 6598 (carrier-grade NAT) and link-local.
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

fn peer(who: &'static str, ep: &EndpointView, signaling: Option<SocketAddr>) -> PeerDiagnosis {
    let packets = ep.userspace_packets + ep.xdp_packets;
    let last = match (ep.last_seen_ms, ep.xdp_idle_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let sending = packets > 0 && last.is_some_and(|ms| ms < SILENT_AFTER_MS);
    let relay = format!("{}:{}", ep.relay, ep.rtp_port);
    let sdp_ip = ip_of(ep.sdp.as_deref());
    let latched_ip = ip_of(ep.latched.as_deref());
    let refused_ip = ip_of(ep.refused_from.as_deref());
    let mut findings = Vec::new();
    let mut nat = false;
    let sdp = ep.sdp.as_deref().unwrap_or("none yet");
    if packets == 0 {
        if let (Some(from), Some(reason)) = (&ep.refused_from, ep.refused_reason) {
            let why = match reason {
                "not_allowed" => {
                    "it is neither the SDP address, the signaling peer nor a configured media \
                     network"
                }
                _ => "another source is latched and strict source is on",
            };
            findings.push(format!(
                "the {who} sent RTP to {relay}, but from {from}, which the latch refused ({reason}: \
                 {why}); its SDP names {sdp}"
            ));
            nat |= refused_ip.is_some() && refused_ip != sdp_ip;
        } else if matches!(ep.sdp_direction, "recvonly" | "inactive") {
            findings.push(format!(
                "the {who} sends nothing, as its SDP asks (a={}): hold, not a fault",
                ep.sdp_direction
            ));
        } else {
            findings.push(format!(
                "the {who} has sent no RTP at all to the relay port {relay} (its SDP names {sdp}): \
                 it does not send, or a firewall between it and the SBC drops it"
            ));
        }
    } else {
        if let (Some(l), Some(s)) = (latched_ip, sdp_ip)
            && l != s
        {
            nat = true;
            findings.push(format!(
                "the {who} sends from {} but its SDP names {sdp}: a NAT in front of it (the relay \
                 latched to the observed source and sends its audio there)",
                ep.latched.as_deref().unwrap_or_default()
            ));
        } else if ep.latched.is_some() && ep.sdp.is_some() && ep.latched != ep.sdp {
            findings.push(format!(
                "the {who} sends from {} while its SDP names port {sdp}: a NAT port mapping or \
                 a different RTP source port",
                ep.latched.as_deref().unwrap_or_default()
            ));
        }
        if let Some(ms) = last
            && ms >= SILENT_AFTER_MS
        {
            findings.push(format!("the {who} stopped sending {ms} ms ago"));
        }
        if let Some(from) = &ep.refused_from {
            findings.push(format!(
                "packets from {from} were also refused ({}), {} dropped in all",
                ep.refused_reason.unwrap_or("dropped"),
                ep.dropped
            ));
        }
    }
    // A private SDP address that is not where its signaling comes from: a NAT the peer did
    // not account for (no STUN/ALG), even before any packet proves it.
    if let (Some(s), Some(sig)) = (sdp_ip, signaling)
        && is_private(s)
        && s != sig.ip()
        && !is_private(sig.ip())
    {
        nat = true;
        findings.push(format!(
            "its SDP names the private address {s} while it signals from {}",
            sig.ip()
        ));
    }
    PeerDiagnosis {
        who,
        relay,
        sdp: ep.sdp.clone(),
        latched: ep.latched.clone(),
        signaling: signaling.map(|a| a.to_string()),
        packets,
        dropped: ep.dropped,
        refused_from: ep.refused_from.clone(),
        refused_reason: ep.refused_reason,
        last_packet_ms_ago: last,
        sending,
        sdp_direction: ep.sdp_direction,
        nat_suspected: nat,
        findings,
    }
}

fn held(p: &PeerDiagnosis) -> bool {
    matches!(p.sdp_direction, "recvonly" | "inactive")
}

/// Diagnoses every stream of `view`; `signaling` holds the PBX's and the carrier's SIP
/// source addresses.
pub fn diagnose(view: &SessionView, signaling: [Option<SocketAddr>; 2]) -> Diagnosis {
    let mut streams = Vec::new();
    for (index, st) in view.streams.iter().enumerate() {
        if st.inside.rtp_port == 0 {
            continue; // a disabled stream (port 0)
        }
        let inside = peer("PBX", &st.inside, signaling[0]);
        let outside = peer("carrier", &st.outside, signaling[1]);
        let (verdict, summary) = match (inside.sending, outside.sending) {
            (true, true) => (AudioState::Ok, "audio flows both ways".to_owned()),
            (false, false) if held(&inside) || held(&outside) => (
                AudioState::Held,
                "no audio, as the SDP asks (hold or inactive)".to_owned(),
            ),
            (false, false) => (
                AudioState::NoAudio,
                "no audio either way: neither the PBX nor the carrier sends".to_owned(),
            ),
            (true, false) | (false, true) => {
                let (talker, silent) = if inside.sending {
                    (&inside, &outside)
                } else {
                    (&outside, &inside)
                };
                (
                    AudioState::OneWay,
                    format!(
                        "one-way audio: the {} sends, the {} has sent {} ({})",
                        talker.who,
                        silent.who,
                        if silent.packets == 0 {
                            "nothing"
                        } else {
                            "nothing lately"
                        },
                        silent
                            .findings
                            .first()
                            .map_or("no more detail", String::as_str)
                    ),
                )
            }
        };
        streams.push(StreamDiagnosis {
            index,
            path: if st.xdp_mappings > 0 {
                "xdp"
            } else {
                "userspace"
            },
            verdict,
            summary,
            inside,
            outside,
        });
    }
    let worst = streams
        .iter()
        .map(|s| s.verdict)
        .max_by_key(|v| match v {
            AudioState::Ok => 0,
            AudioState::Held => 1,
            AudioState::OneWay => 2,
            AudioState::NoAudio => 3,
        })
        .unwrap_or(AudioState::NoAudio);
    let summary = streams
        .iter()
        .find(|s| s.verdict == worst)
        .map_or_else(|| "no media streams".to_owned(), |s| s.summary.clone());
    Diagnosis {
        verdict: worst,
        summary,
        streams,
    }
}

/// Adds the streams of `view` whose PBX side, carrier side or both sides are silent to
/// `counts` (in that order), for the `sbc_media_silent_streams` gauge. Streams held by their
/// SDP are not counted.
pub fn count_silent(view: &SessionView, counts: &mut [i64; 3]) {
    for s in diagnose(view, [None, None]).streams {
        let slot = match (s.inside.sending, s.outside.sending, s.verdict) {
            (_, _, AudioState::Held) | (true, true, _) => continue,
            (false, true, _) => 0,
            (true, false, _) => 1,
            (false, false, _) => 2,
        };
        counts[slot] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::view::StreamView;

    fn ep(
        sdp: Option<&str>,
        latched: Option<&str>,
        packets: u64,
        last: Option<u64>,
    ) -> EndpointView {
        EndpointView {
            relay: "203.0.113.1".into(),
            bind: "203.0.113.1".into(),
            rtp_port: 10_000,
            rtcp_port: 10_001,
            latched: latched.map(str::to_owned),
            target: latched.or(sdp).map(str::to_owned),
            userspace_packets: packets,
            userspace_bytes: packets * 172,
            xdp_packets: 0,
            xdp_bytes: 0,
            dropped: 0,
            last_seen_ms: last,
            rtp_lost: 0,
            rtp_jitter_ms: None,
            rtcp_report: None,
            sdp: sdp.map(str::to_owned),
            sdp_direction: "sendrecv",
            refused_from: None,
            refused_reason: None,
            xdp_idle_ms: None,
        }
    }

    fn view(inside: EndpointView, outside: EndpointView) -> SessionView {
        SessionView {
            id: 1,
            committed: true,
            timed_out: false,
            adopted: false,
            idle_ms: 0,
            streams: vec![StreamView {
                inside,
                outside,
                xdp_mappings: 0,
                socketless: false,
                srtp: crate::media::view::SrtpView {
                    inside: None,
                    outside: None,
                },
            }],
        }
    }

    const PBX_SIG: &str = "192.0.2.10:5060";
    const CARRIER_SIG: &str = "198.51.100.2:5060";

    fn sig() -> [Option<SocketAddr>; 2] {
        [PBX_SIG.parse().ok(), CARRIER_SIG.parse().ok()]
    }

    #[test]
    fn both_sending_is_ok() {
        let v = view(
            ep(
                Some("192.0.2.10:4000"),
                Some("192.0.2.10:4000"),
                50,
                Some(20),
            ),
            ep(
                Some("198.51.100.9:30000"),
                Some("198.51.100.9:30000"),
                50,
                Some(20),
            ),
        );
        let d = diagnose(&v, sig());
        assert_eq!(d.verdict, AudioState::Ok);
        assert!(d.streams[0].inside.findings.is_empty());
        assert!(!d.streams[0].outside.nat_suspected);
    }

    #[test]
    fn silent_carrier_is_one_way_and_named() {
        let v = view(
            ep(
                Some("192.0.2.10:4000"),
                Some("192.0.2.10:4000"),
                50,
                Some(20),
            ),
            ep(Some("198.51.100.9:30000"), None, 0, None),
        );
        let d = diagnose(&v, sig());
        assert_eq!(d.verdict, AudioState::OneWay);
        assert!(
            d.summary
                .contains("the PBX sends, the carrier has sent nothing"),
            "{}",
            d.summary
        );
        let mut counts = [0; 3];
        count_silent(&v, &mut counts);
        assert_eq!(counts, [0, 1, 0], "the carrier is the silent side");
        assert!(!d.streams[0].outside.sending);
        assert!(d.streams[0].outside.findings[0].contains("no RTP at all"));
    }

    #[test]
    fn refused_latch_is_reported_with_its_source_and_nat() {
        let mut carrier = ep(Some("198.51.100.9:30000"), None, 0, None);
        carrier.refused_from = Some("203.0.113.77:30000".into());
        carrier.refused_reason = Some("not_allowed");
        carrier.dropped = 40;
        let v = view(
            ep(
                Some("192.0.2.10:4000"),
                Some("192.0.2.10:4000"),
                50,
                Some(20),
            ),
            carrier,
        );
        let d = diagnose(&v, sig());
        let c = &d.streams[0].outside;
        assert_eq!(d.verdict, AudioState::OneWay);
        assert!(c.nat_suspected);
        assert!(
            c.findings[0].contains("from 203.0.113.77:30000"),
            "{:?}",
            c.findings
        );
        assert!(c.findings[0].contains("not_allowed"));
    }

    #[test]
    fn nat_from_latched_source_and_private_sdp_address() {
        // The PBX behind a NAT: SDP names 10.0.0.5, packets come from its public address.
        let v = view(
            ep(
                Some("10.0.0.5:4000"),
                Some("192.0.2.10:61000"),
                50,
                Some(20),
            ),
            ep(
                Some("198.51.100.9:30000"),
                Some("198.51.100.9:30000"),
                50,
                Some(20),
            ),
        );
        let d = diagnose(&v, sig());
        let p = &d.streams[0].inside;
        assert!(p.nat_suspected);
        assert!(
            p.findings
                .iter()
                .any(|f| f.contains("a NAT in front of it"))
        );
        assert!(
            p.findings
                .iter()
                .any(|f| f.contains("private address 10.0.0.5"))
        );
        assert_eq!(d.verdict, AudioState::Ok);
    }

    #[test]
    fn stopped_sender_hold_and_silence_both_ways() {
        let v = view(
            ep(
                Some("192.0.2.10:4000"),
                Some("192.0.2.10:4000"),
                50,
                Some(9_000),
            ),
            ep(
                Some("198.51.100.9:30000"),
                Some("198.51.100.9:30000"),
                50,
                Some(20),
            ),
        );
        let d = diagnose(&v, sig());
        assert_eq!(d.verdict, AudioState::OneWay);
        assert!(d.streams[0].inside.findings[0].contains("stopped sending 9000 ms ago"));
        let mut a = ep(Some("192.0.2.10:4000"), None, 0, None);
        a.sdp_direction = "inactive";
        let d = diagnose(
            &view(a, ep(Some("198.51.100.9:30000"), None, 0, None)),
            sig(),
        );
        assert_eq!(d.verdict, AudioState::Held);
        let d = diagnose(
            &view(
                ep(Some("192.0.2.10:4000"), None, 0, None),
                ep(Some("198.51.100.9:30000"), None, 0, None),
            ),
            sig(),
        );
        assert_eq!(d.verdict, AudioState::NoAudio);
    }
}
