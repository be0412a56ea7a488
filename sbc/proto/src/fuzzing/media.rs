//! The media table's per-packet path as an attacker meets it: arbitrary datagrams from the
//! call's peers, from addresses inside a trunk's media networks and from a stranger, on either
//! leg's RTP and RTCP ports, into a session with SRTP, DTMF interworking and payload-type
//! rewriting switched on by the input, with re-keying, re-offers, generated digits and time
//! passing in between.
//!
//! Properties:
//! - nothing is ever forwarded to the stranger, and a forwarded packet goes to an address of
//!   the other leg (its SDP address, its signaling peer or its media networks) and fits the
//!   buffer;
//! - from an encrypted leg only packets protected with that leg's key get through (the input
//!   cannot forge an authentication tag);
//! - generated digits go only to the leg's peer;
//! - after the session is released and time has passed, the table holds nothing (the leak
//!   check of the table's tests).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use crate::{
    dtmf::Digit,
    ids::Rng,
    media::{
        Allocation, MediaPeers, MediaTable, PacketAction, RelayPort, RelaySettings, SideAddress,
        SideAddresses, StreamDesc, StreamKey, StreamPayloadMaps,
        crypto::HEADROOM,
        dtmf::StreamDtmf,
        policy::{MediaPolicy, TrunkMedia},
        table::Arrival,
    },
    net::Side,
    sdp::{PayloadMap, Sdp},
    srtp::{KeySpec, MasterKey, SrtpContext, StreamKeys, Suite},
};

const PBX: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
const CARRIER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
/// The carrier's signaling peer (media may come from there too).
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
/// An address inside the trunk's media networks that is not in the SDP.
const NETWORK: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 99));
/// Nobody in the call.
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66)), 6666);

/// The addresses a forwarded packet may go to on `leg`.
fn may_receive(leg: Side, ip: IpAddr) -> bool {
    match leg {
        Side::Inside => ip == PBX,
        Side::Outside => [CARRIER, PROXY, NETWORK].contains(&ip),
    }
}

fn settings(strict: bool) -> RelaySettings {
    let side = |last| {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
        SideAddress {
            bind: ip,
            advertised: ip,
        }
    };
    // Two relay addresses on the outside, so re-offers and new calls move between pools.
    let Some(outside) = SideAddresses::new(vec![side(2), side(3)]) else {
        unreachable!("two addresses");
    };
    RelaySettings {
        inside: side(1).into(),
        outside,
        port_min: 30_000,
        port_max: 30_015,
        strict_source: strict,
        relatch_window: Duration::from_secs(2),
        max_streams: 4,
        dtmf_queue: 4,
        timeout: Some(Duration::from_secs(60)),
        hold_timeout: Some(Duration::from_secs(600)),
    }
}

fn policy() -> MediaPolicy {
    let mut p = MediaPolicy::default();
    let net = "198.51.100.0/24".parse().unwrap_or_else(|_| unreachable!());
    p.trunks.insert(
        "carrier".into(),
        TrunkMedia {
            networks: vec![net].into(),
            max_ports: Some(8),
        },
    );
    p
}

fn keys(seed: u64) -> StreamKeys {
    let suite = Suite::ALL[usize::try_from(seed).unwrap_or(0) % Suite::ALL.len()];
    let mut rng = Rng::from_test_seed(seed);
    let mut spec = || KeySpec {
        suite,
        key: MasterKey::generate(suite, &mut rng),
        lifetime: None,
    };
    StreamKeys {
        rx: spec(),
        tx: spec(),
    }
}

/// telephone-event 101 on the inside, 96 on the outside; RED 100 ↔ 110.
fn payload_maps() -> StreamPayloadMaps {
    let sdp = |red: u8, te: u8| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0 {red} {te}\r\n\
             a=rtpmap:{red} red/8000\r\na=fmtp:{red} 0/0\r\na=rtpmap:{te} telephone-event/8000\r\n"
        )
    };
    let (inside, outside) = (sdp(100, 101), sdp(110, 96));
    let (Ok(i), Ok(o)) = (
        Sdp::parse(inside.as_bytes()),
        Sdp::parse(outside.as_bytes()),
    ) else {
        unreachable!("constant SDP parses");
    };
    let (Some(i), Some(o)) = (i.media_at(0), o.media_at(0)) else {
        unreachable!("constant SDP has a section");
    };
    StreamPayloadMaps {
        inside_to_outside: PayloadMap::between(&i, &o),
        outside_to_inside: PayloadMap::between(&o, &i),
    }
}

/// The session's switches, from the input's first byte.
#[derive(Clone, Copy)]
struct Features {
    srtp: [bool; 2],
    dtmf: bool,
    maps: bool,
    fast_path: bool,
    strict: bool,
    mux: bool,
}

impl Features {
    fn from(b: u8) -> Self {
        Self {
            srtp: [b & 1 != 0, b & 2 != 0],
            dtmf: b & 4 != 0,
            maps: b & 8 != 0,
            fast_path: b & 16 != 0,
            strict: b & 32 == 0,
            mux: b & 64 != 0,
        }
    }
}

/// One call's media and the peers' own SRTP ends (what they protect with).
struct Call {
    alloc: Allocation,
    /// Per leg: the context the peer on that leg sends with (our receive key).
    senders: [Option<SrtpContext>; 2],
    key_seed: u64,
}

fn desc(ip: IpAddr, port: u16, mux: bool) -> StreamDesc {
    let mut d = StreamDesc::new(ip, port);
    d.rtcp_mux = mux;
    d
}

fn open(t: &mut MediaTable, now: Instant, f: Features, key_seed: u64) -> Option<Call> {
    let peers = MediaPeers {
        inside: Some(PBX),
        outside: Some(PROXY),
        trunk: Some("carrier".into()),
    };
    let alloc = t
        .allocate(now, Side::Inside, &[desc(PBX, 4000, f.mux)], &peers)
        .ok()?;
    let s = alloc.session;
    t.commit(now, s, Side::Outside, &[desc(CARRIER, 5000, f.mux)])
        .ok()?;
    let mut call = Call {
        alloc,
        senders: [None, None],
        key_seed,
    };
    rekey(t, now, f, &mut call);
    // In the call layer's order (`codec_policy::relay_maps`): maps, then DTMF.
    if f.maps {
        t.set_payload_maps(now, s, &[payload_maps()]).ok()?;
    }
    if f.dtmf {
        let dtmf = StreamDtmf {
            terminated: [None, Some(96)],
        };
        t.set_dtmf(now, s, &[dtmf]).ok()?;
    }
    Some(call)
}

/// New keys on the encrypted legs (a re-INVITE that re-keys).
fn rekey(t: &mut MediaTable, now: Instant, f: Features, call: &mut Call) {
    for leg in [Side::Inside, Side::Outside] {
        let i = leg.index();
        call.key_seed = call.key_seed.wrapping_add(1);
        let k = f.srtp[i].then(|| keys(call.key_seed));
        call.senders[i] = k
            .as_ref()
            .map(|k| SrtpContext::new(k.rx.suite, &k.rx.key, None));
        // A refused key (the relay may refuse a suite) leaves the leg as it was: send plain.
        if t.set_crypto(now, call.alloc.session, leg, &[k]).is_err() {
            call.senders[i] = None;
        }
    }
}

fn check(
    action: PacketAction,
    from: Side,
    src: SocketAddr,
    buf_len: usize,
    genuine: bool,
    encrypted: bool,
) {
    if let PacketAction::Forward { to, len, .. } = action {
        assert_ne!(to, STRANGER, "forwarded to the stranger");
        assert!(
            may_receive(from.other(), to.ip()),
            "forwarded to {to}, not a peer of the {} leg",
            from.other().as_str()
        );
        assert!(len <= buf_len, "{len} bytes out of a {buf_len}-byte buffer");
        assert!(
            genuine || !encrypted,
            "a datagram from {src} not protected with the {} leg's key got through",
            from.as_str()
        );
    }
}

/// Input: the first byte switches features (see [`Features`]); then records of a control
/// byte and a parameter byte, which for a datagram is its length and that many bytes follow
/// (fewer at the end). The control byte's low three bits pick the operation, the others its
/// leg, port and source.
pub fn media(data: &[u8]) {
    let _ = run(data);
}

/// What a run did (the seeds' test checks that they reach the interesting paths).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    forwarded: usize,
    consumed: usize,
    generated: usize,
}

fn run(data: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let Some((&first, mut rest)) = data.split_first() else {
        return seen;
    };
    let f = Features::from(first);
    let mut t = MediaTable::new(
        settings(f.strict),
        policy(),
        f.fast_path,
        64,
        Rng::from_test_seed(7),
    );
    #[allow(
        clippy::disallowed_methods,
        reason = "fuzzing entry point: an origin for simulated time"
    )]
    let mut now = Instant::now();
    let Some(mut call) = open(&mut t, now, f, u64::from(first)) else {
        unreachable!("a fresh table takes one call");
    };
    let mut buf = vec![0u8; 512 + HEADROOM];
    let mut ops = 0;
    while let [c, n, tail @ ..] = rest {
        ops += 1;
        if ops > 256 {
            break;
        }
        // Only datagrams carry bytes; for the other operations `n` is their parameter.
        let take = if c & 7 <= 1 {
            usize::from(*n).min(tail.len())
        } else {
            0
        };
        let (bytes, next) = tail.split_at(take);
        rest = next;
        let leg = if c & 8 == 0 {
            Side::Inside
        } else {
            Side::Outside
        };
        let port = if c & 16 == 0 {
            RelayPort::Rtp
        } else {
            RelayPort::Rtcp
        };
        let key = StreamKey {
            session: call.alloc.session,
            index: 0,
        };
        match c & 7 {
            // A datagram, as it comes or (1) protected by the leg's peer.
            op @ (0 | 1) => {
                let src = match (c >> 5) & 3 {
                    0 => match leg {
                        Side::Inside => SocketAddr::new(PBX, 4000),
                        Side::Outside => SocketAddr::new(CARRIER, 5000),
                    },
                    1 => match leg {
                        Side::Inside => SocketAddr::new(PBX, 4100),
                        Side::Outside => SocketAddr::new(PROXY, 5100),
                    },
                    2 => SocketAddr::new(NETWORK, 7000),
                    _ => STRANGER,
                };
                buf[..take].copy_from_slice(bytes);
                let mut len = take;
                let i = leg.index();
                let genuine = op == 1;
                if genuine {
                    if len < 12 {
                        continue;
                    }
                    // A well-formed header: version 2, no padding or extension.
                    buf[0] = 0x80 | (buf[0] & 0x0f);
                    if let Some(tx) = call.senders[i].as_mut() {
                        let protected = if port == RelayPort::Rtcp {
                            if len < 8 {
                                continue;
                            }
                            buf[1] = 200 | (buf[1] & 1);
                            tx.protect_rtcp(&mut buf, len)
                        } else {
                            tx.protect_rtp(&mut buf, len)
                        };
                        match protected {
                            Ok(n) => len = n,
                            Err(_) => continue,
                        }
                    }
                }
                let encrypted = call.senders[i].is_some();
                let arrival = Arrival {
                    stream: key,
                    leg,
                    port,
                    src,
                };
                let action = t.handle_packet(now, arrival, &mut buf, len);
                match action {
                    PacketAction::Forward { .. } => seen.forwarded += 1,
                    PacketAction::Consumed => seen.consumed += 1,
                    PacketAction::Drop(_) => {}
                }
                check(action, leg, src, buf.len(), genuine, encrypted);
            }
            // Time passes: 0 to 2.5 s, or (high bit) up to 70 s, past the media timeout.
            2 => {
                let ms = u64::from(*n) * if c & 128 == 0 { 10 } else { 275 };
                now += Duration::from_millis(ms);
                t.handle_timeout(now);
            }
            // A digit generated toward a leg, and everything due sent.
            3 => {
                let Some(digit) = Digit::from_event(*n % 16) else {
                    unreachable!("events 0-15 are digits");
                };
                let pt = if leg == Side::Outside { 96 } else { 101 };
                let _ = t.generate_dtmf(now, key, leg, pt, digit, 100);
                let mut sent = 0;
                while let Some(g) = t.poll_generated(now, key, &mut buf) {
                    assert!(may_receive(g.toward, g.to.ip()), "digit sent to {}", g.to);
                    assert!(g.len <= buf.len());
                    sent += 1;
                    seen.generated += 1;
                    assert!(sent < 10_000, "a digit never ends");
                }
            }
            4 => rekey(&mut t, now, f, &mut call),
            // A re-offer from `leg` moving its media to another port.
            5 => {
                let ip = if leg == Side::Inside { PBX } else { CARRIER };
                let port = 4000 + u16::from(*n) * 2;
                let _ = t.update(now, call.alloc.session, leg, &[desc(ip, port, f.mux)]);
            }
            // The call ends and another begins.
            6 => {
                t.release(call.alloc.session);
                match open(&mut t, now, f, call.key_seed) {
                    Some(c) => call = c,
                    None => unreachable!("a released call's ports are free again"),
                }
            }
            _ => {
                while t.poll_command().is_some() {}
                while t.poll_event().is_some() {}
            }
        }
    }
    t.release(call.alloc.session);
    t.handle_timeout(now + Duration::from_secs(3600));
    while t.poll_command().is_some() {}
    while t.poll_event().is_some() {}
    assert!(t.holds_nothing(), "the table holds state after the call");
    seen
}

#[cfg(test)]
mod tests {
    use super::run;

    fn seed(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/media/");
        std::fs::read(format!("{dir}{name}")).expect("seed")
    }

    /// The committed seeds hold the properties and reach what they are for: packets forwarded
    /// (through SRTP on both legs, too), telephone-events consumed and digits generated.
    #[test]
    fn seeds() {
        for name in [
            "plain",
            "srtp-both",
            "srtp-outside-loose",
            "fastpath-mux-reoffer",
        ] {
            let seen = run(&seed(name));
            assert!(seen.forwarded >= 4, "{name}: {seen:?}");
        }
        let dtmf = run(&seed("dtmf-maps"));
        assert!(dtmf.consumed >= 1 && dtmf.generated >= 1, "{dtmf:?}");
        run(b"");
        run(b"\x7f");
    }
}
