//! Per-stream SRTP termination in the userspace relay: for each leg whose SDP negotiated SDES
//! keys (`sbc_proto::b2bua` `srtp_policy.rs`), a context that unprotects what the peer sends
//! and one that protects what the relay sends it. RTP⇄SRTP and SRTP⇄SRTP (with different keys
//! per leg) are the same two steps: unprotect on the way in if the ingress leg is encrypted,
//! protect on the way out if the egress leg is.
//!
//! Packets are transformed in place in the socket task's receive buffer, which has
//! [`HEADROOM`] spare bytes for the trailer: nothing is allocated per packet. A packet from an
//! encrypted leg is authenticated before the latch sees it (a forged packet from an allowed
//! address cannot move the latch), and a stream with any encrypted leg never gets an XDP
//! mapping (XDP cannot run AES).

use sbc_proto::{
    media::Leg,
    srtp::{KeySpec, SrtpContext, SrtpError, StreamKeys},
};

use super::relay::leg_idx;

/// Bytes the largest protect adds: SRTCP with GCM (16-byte tag + 4-byte index).
pub(crate) const HEADROOM: usize = 20;

/// The `sbc_media_packets_dropped_total` reason of an SRTP failure.
pub(crate) fn drop_reason(e: SrtpError) -> &'static str {
    match e {
        SrtpError::AuthFailed => "srtp_auth_failed",
        SrtpError::Replayed => "srtp_replayed",
        SrtpError::KeyExhausted => "srtp_key_exhausted",
        _ => "srtp_malformed",
    }
}

/// Every SRTP drop reason (registered at start so the series exist before the first drop).
pub(crate) const DROP_REASONS: [&str; 4] = [
    "srtp_auth_failed",
    "srtp_replayed",
    "srtp_key_exhausted",
    "srtp_malformed",
];

/// One encrypted leg.
#[derive(Debug)]
struct LegCrypto {
    keys: StreamKeys,
    rx: SrtpContext,
    tx: SrtpContext,
}

fn context(spec: &KeySpec) -> SrtpContext {
    SrtpContext::new(spec.suite, &spec.key, spec.lifetime)
}

/// The SRTP state of one stream: per leg, `None` for plain RTP.
#[derive(Debug, Default)]
pub(crate) struct StreamSrtp {
    legs: [Option<LegCrypto>; 2],
}

impl StreamSrtp {
    /// Sets `leg`'s keys. The same keys keep their contexts (ROC, replay list, SRTCP index);
    /// a new key in either direction gets a new context for that direction (re-key).
    pub fn set(&mut self, leg: Leg, keys: Option<&StreamKeys>) {
        let slot = &mut self.legs[leg_idx(leg)];
        match (slot.as_mut(), keys) {
            (_, None) => *slot = None,
            (Some(cur), Some(k)) => {
                if cur.keys.rx != k.rx {
                    cur.rx = context(&k.rx);
                }
                if cur.keys.tx != k.tx {
                    cur.tx = context(&k.tx);
                }
                cur.keys = k.clone();
            }
            (None, Some(k)) => {
                *slot = Some(LegCrypto {
                    keys: k.clone(),
                    rx: context(&k.rx),
                    tx: context(&k.tx),
                });
            }
        }
    }

    /// Whether any leg is encrypted (the stream then stays in userspace).
    pub fn active(&self) -> bool {
        self.legs.iter().any(Option::is_some)
    }

    /// The suite of `leg`, if encrypted (admin API; never the keys).
    pub fn suite(&self, leg: Leg) -> Option<&'static str> {
        self.legs[leg_idx(leg)]
            .as_ref()
            .map(|l| l.keys.tx.suite.name())
    }

    /// Unprotects a packet that arrived from `leg` (`buf[..len]`, in place) if that leg is
    /// encrypted. Returns the plain length.
    pub fn inbound(
        &mut self,
        leg: Leg,
        rtcp: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        let Some(l) = &mut self.legs[leg_idx(leg)] else {
            return Ok(len);
        };
        let packet = buf.get_mut(..len).ok_or(SrtpError::Malformed)?;
        if rtcp {
            l.rx.unprotect_rtcp(packet)
        } else {
            l.rx.unprotect_rtp(packet)
        }
    }

    /// Protects a plain packet (`buf[..len]`) for `leg` in place if that leg is encrypted;
    /// `buf` has [`HEADROOM`] spare bytes. Returns the length to send.
    pub fn outbound(
        &mut self,
        leg: Leg,
        rtcp: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        let Some(l) = &mut self.legs[leg_idx(leg)] else {
            return Ok(len);
        };
        if rtcp {
            l.tx.protect_rtcp(buf, len)
        } else {
            l.tx.protect_rtp(buf, len)
        }
    }
}

#[cfg(test)]
mod tests {
    use sbc_proto::{
        b2bua::Rng,
        srtp::{MasterKey, Suite},
    };

    use super::*;

    fn keys(seed: u64, suite: Suite) -> StreamKeys {
        let mut rng = Rng::from_test_seed(seed);
        let spec = |rng: &mut Rng| KeySpec {
            suite,
            key: MasterKey::generate(suite, rng),
            lifetime: None,
        };
        StreamKeys {
            rx: spec(&mut rng),
            tx: spec(&mut rng),
        }
    }

    fn rtp(seq: u16) -> ([u8; 64], usize) {
        let mut b = [0u8; 64];
        b[0] = 0x80;
        b[2..4].copy_from_slice(&seq.to_be_bytes());
        b[8..12].copy_from_slice(&7u32.to_be_bytes());
        b[12..32].copy_from_slice(&[0x55; 20]);
        (b, 32)
    }

    /// SRTP from the carrier (its key) becomes SRTP to the PBX (another key): the PBX's own
    /// context decrypts it, the carrier's key does not.
    #[test]
    fn srtp_to_srtp_re_encrypts_with_the_other_legs_key() {
        let suite = Suite::AesCm128HmacSha1_80;
        let (pbx, carrier) = (keys(1, suite), keys(2, suite));
        let mut s = StreamSrtp::default();
        s.set(Leg::Inside, Some(&pbx));
        s.set(Leg::Outside, Some(&carrier));
        assert!(s.active());
        // The carrier protects with its key (our rx on the outside leg).
        let mut carrier_tx = context(&carrier.rx);
        let (mut b, n) = rtp(1);
        let n = carrier_tx.protect_rtp(&mut b, n).expect("protect");
        let n = s
            .inbound(Leg::Outside, false, &mut b, n)
            .expect("authentic");
        assert_eq!(b[12..n], [0x55; 20]);
        let n = s.outbound(Leg::Inside, false, &mut b, n).expect("protect");
        // The PBX unprotects with our inside tx key; the carrier's key fails.
        let mut copy = b;
        assert_eq!(
            context(&carrier.rx).unprotect_rtp(&mut copy[..n]),
            Err(SrtpError::AuthFailed)
        );
        let m = context(&pbx.tx)
            .unprotect_rtp(&mut b[..n])
            .expect("pbx key");
        assert_eq!(b[12..m], [0x55; 20]);
    }

    /// Through the real relay on loopback: plain RTP from the PBX leaves toward the carrier
    /// encrypted with the SBC's outside key, the carrier's SRTP reaches the PBX plain, and
    /// packets with a corrupted tag are dropped and counted, not forwarded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_terminates_srtp_and_drops_forged_packets() {
        use std::{
            net::{IpAddr, Ipv4Addr, SocketAddr},
            time::Duration,
        };

        use sbc_proto::media::{MediaControl as _, MediaPeers, StreamDesc};

        use crate::media::{
            MediaManager, MediaSettings, manager::SideAddress, policy::MediaPolicy,
        };
        const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let side = SideAddress {
            bind: LO,
            advertised: LO,
        };
        let settings = MediaSettings {
            inside: side,
            outside: side,
            port_min: 41_700,
            port_max: 41_799,
            strict_source: false,
            relatch_window: Duration::from_secs(2),
            max_streams: 4,
            policy: MediaPolicy::default(),
            timeout: Some(Duration::from_secs(60)),
            hold_timeout: Some(Duration::from_secs(3600)),
        };
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        let mut m = MediaManager::new(settings, None, metrics.media.clone());
        let pbx = std::net::UdpSocket::bind("127.0.0.1:0").expect("pbx");
        let carrier = std::net::UdpSocket::bind("127.0.0.1:0").expect("carrier");
        for s in [&pbx, &carrier] {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
        }
        let pbx_port = pbx.local_addr().expect("addr").port();
        let carrier_port = carrier.local_addr().expect("addr").port();
        let a = m
            .allocate(
                Leg::Inside,
                &[StreamDesc::new(LO, pbx_port)],
                &MediaPeers::default(),
            )
            .expect("offer");
        m.commit(
            a.session,
            Leg::Outside,
            &[StreamDesc::new(LO, carrier_port)],
        )
        .expect("answer");
        let outside = keys(11, Suite::AesCm128HmacSha1_80);
        m.set_crypto(a.session, Leg::Outside, &[Some(outside.clone())])
            .expect("keys");
        let in_relay = SocketAddr::new(LO, a.streams[0].inside.rtp_port);
        let out_relay = SocketAddr::new(LO, a.streams[0].outside.rtp_port);
        let mut buf = [0u8; 256];

        // PBX → carrier: encrypted on the wire, decrypts with the SBC's outside tx key.
        let (plain, n) = rtp(1);
        pbx.send_to(&plain[..n], in_relay).expect("send");
        let (got, _) = carrier.recv_from(&mut buf).expect("carrier receives");
        assert_eq!(got, n + 10, "80-bit tag appended");
        assert_ne!(
            buf[12..n],
            plain[12..n],
            "no clear payload toward the carrier"
        );
        let len = context(&outside.tx)
            .unprotect_rtp(&mut buf[..got])
            .expect("SBC's key");
        assert_eq!(buf[..len], plain[..n]);

        // Carrier → PBX: its SRTP arrives plain.
        let mut carrier_ctx = context(&outside.rx);
        let (mut p, n) = rtp(500);
        let sn = carrier_ctx.protect_rtp(&mut p, n).expect("protect");
        carrier.send_to(&p[..sn], out_relay).expect("send");
        let (got, _) = pbx.recv_from(&mut buf).expect("pbx receives");
        assert_eq!(buf[..got], rtp(500).0[..n]);

        // A corrupted tag: dropped, counted, nothing reaches the PBX.
        let (mut p, n) = rtp(501);
        let sn = carrier_ctx.protect_rtp(&mut p, n).expect("protect");
        p[sn - 1] ^= 0xff;
        carrier.send_to(&p[..sn], out_relay).expect("send");
        assert!(
            pbx.recv_from(&mut buf).is_err(),
            "forged packet not forwarded"
        );
        assert_eq!(metrics.media.srtp_auth_failures.get(), 1);
        let v = m.session_view(a.session).expect("view");
        assert_eq!(v.streams[0].srtp.outside, Some("AES_CM_128_HMAC_SHA1_80"));
        assert_eq!(v.streams[0].srtp.inside, None);
        assert!(!format!("{v:?}").contains(&outside.tx.key.to_inline()));
        m.release(a.session);
    }

    /// A new key replaces the context (a packet under the old key no longer authenticates);
    /// the same key keeps it (the replay list still knows the packet).
    #[test]
    fn rekey_replaces_the_context_and_same_key_keeps_it() {
        let suite = Suite::AeadAes128Gcm;
        let old = keys(3, suite);
        let mut s = StreamSrtp::default();
        s.set(Leg::Outside, Some(&old));
        let mut peer = context(&old.rx);
        let (mut b, n) = rtp(10);
        let n = peer.protect_rtp(&mut b, n).expect("protect");
        let packet = b;
        s.inbound(Leg::Outside, false, &mut b, n).expect("first");
        s.set(Leg::Outside, Some(&old));
        let mut again = packet;
        assert_eq!(
            s.inbound(Leg::Outside, false, &mut again, n),
            Err(SrtpError::Replayed),
            "same key: same context"
        );
        let new = keys(4, suite);
        s.set(Leg::Outside, Some(&new));
        let mut again = packet;
        assert_eq!(
            s.inbound(Leg::Outside, false, &mut again, n),
            Err(SrtpError::AuthFailed),
            "new key: the old one no longer decrypts"
        );
        s.set(Leg::Outside, None);
        assert!(!s.active());
    }
}
