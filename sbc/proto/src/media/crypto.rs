//! Per-stream SRTP termination state: for each leg whose SDP negotiated SDES keys (`b2bua`
//! `srtp_policy.rs`), a context that unprotects what the peer sends and one that protects what
//! the relay sends it. RTP⇄SRTP and SRTP⇄SRTP (with different keys per leg) are the same two
//! steps: unprotect on the way in if the ingress leg is encrypted, protect on the way out if the
//! egress leg is.
//!
//! A stream's packet path applies them ([`StreamPath::handle`]), in place in the
//! runtime's receive buffer, which has [`HEADROOM`] spare bytes behind the datagram for the
//! trailer: nothing is allocated per packet. A packet from an encrypted leg is authenticated
//! before the latch sees it (a forged packet from an allowed address cannot move the latch),
//! and a stream with any encrypted leg never gets a fast-path mapping (XDP cannot run AES).
//!
//! [`StreamPath::handle`]: super::path::StreamPath::handle

use super::Side;
use crate::srtp::{KeySpec, SrtpContext, SrtpError, StreamKeys};

/// Bytes the largest protect adds: SRTCP with GCM (16-byte tag + 4-byte index).
pub const HEADROOM: usize = 20;

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

fn rekeyed(old: &SrtpContext, spec: &KeySpec) -> SrtpContext {
    old.rekeyed(spec.suite, &spec.key, spec.lifetime)
}

/// The SRTP state of one stream: per leg, `None` for plain RTP; a leg may also await its keys
/// (SRTP offered or accepted, answer not yet through), during which the stream relays nothing.
///
/// A leg's contexts are boxed: inline, two legs' worth of key schedules and per-SSRC replay
/// state made every stream about 9 KB, plain RTP streams (nearly all of them) included —
/// 90 MB of `None`s at 10,000 calls.
#[derive(Debug, Default)]
pub struct StreamSrtp {
    legs: [Option<Box<LegCrypto>>; 2],
    pending: [bool; 2],
}

impl StreamSrtp {
    /// Sets `leg`'s keys. The same keys keep their contexts (ROC, replay list, SRTCP index);
    /// a new key in either direction gets a new context for that direction (re-key), which
    /// keeps each SSRC's rollover counter and sequence (RFC 3711 §3.3.1: never reset by a
    /// re-key; [`SrtpContext::rekeyed`]).
    pub fn set(&mut self, leg: Side, keys: Option<&StreamKeys>) {
        self.pending[leg.index()] = false;
        let slot = &mut self.legs[leg.index()];
        match (slot.as_mut(), keys) {
            (_, None) => *slot = None,
            (Some(cur), Some(k)) => {
                if cur.keys.rx != k.rx {
                    cur.rx = rekeyed(&cur.rx, &k.rx);
                }
                if cur.keys.tx != k.tx {
                    cur.tx = rekeyed(&cur.tx, &k.tx);
                }
                cur.keys = k.clone();
            }
            (None, Some(k)) => {
                *slot = Some(Box::new(LegCrypto {
                    keys: k.clone(),
                    rx: context(&k.rx),
                    tx: context(&k.tx),
                }));
            }
        }
    }

    /// Marks `leg` as awaiting keys when it is plain now: SRTP was offered or accepted on it
    /// and the answer that settles the keys is not through yet. Until [`set`](Self::set), the
    /// stream relays nothing: a plain packet forwarded to that leg would cross its link in
    /// clear, and an encrypted one from it cannot be authenticated. A leg that has keys keeps
    /// them (a re-offer does not interrupt the media it protects).
    pub fn expect(&mut self, leg: Side) {
        let i = leg.index();
        if self.legs[i].is_none() {
            self.pending[i] = true;
        }
    }

    /// `leg` no longer awaits keys: SRTP is not negotiated on it any more (a failover from a
    /// trunk that required it to one that does not). Keys in force stay until
    /// [`set`](Self::set).
    pub fn unexpect(&mut self, leg: Side) {
        self.pending[leg.index()] = false;
    }

    /// Whether a leg awaits its keys (the stream then relays nothing).
    pub fn awaiting_keys(&self) -> bool {
        self.pending.iter().any(|p| *p)
    }

    /// Whether any leg is encrypted or awaits keys (the stream then stays in userspace).
    pub fn active(&self) -> bool {
        self.legs.iter().any(Option::is_some) || self.awaiting_keys()
    }

    /// Whether `leg` awaits its keys ([`expect`](Self::expect) without [`set`](Self::set)).
    pub fn awaiting(&self, leg: Side) -> bool {
        self.pending[leg.index()]
    }

    /// The keys `leg` was last [`set`](Self::set) to (`None`: plain RTP). For simulations
    /// that check what the call layer negotiated; the admin API shows only the suite.
    pub fn keys(&self, leg: Side) -> Option<&StreamKeys> {
        self.legs[leg.index()].as_ref().map(|l| &l.keys)
    }

    /// The suite of `leg`, if encrypted (admin API; never the keys).
    pub fn suite(&self, leg: Side) -> Option<&'static str> {
        self.legs[leg.index()]
            .as_ref()
            .map(|l| l.keys.tx.suite.name())
    }

    /// Unprotects a packet that arrived from `leg` (`buf[..len]`, in place) if that leg is
    /// encrypted. Returns the plain length.
    pub fn inbound(
        &mut self,
        leg: Side,
        rtcp: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        let Some(l) = &mut self.legs[leg.index()] else {
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
    /// `buf` should have [`HEADROOM`] spare bytes. Returns the length to send.
    pub fn outbound(
        &mut self,
        leg: Side,
        rtcp: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        let Some(l) = &mut self.legs[leg.index()] else {
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
    use super::*;
    use crate::{
        ids::Rng,
        srtp::{
            MasterKey, Suite,
            cipher::{Kind, Transform},
        },
    };

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
        s.set(Side::Inside, Some(&pbx));
        s.set(Side::Outside, Some(&carrier));
        assert!(s.active());
        // The carrier protects with its key (our rx on the outside leg).
        let mut carrier_tx = context(&carrier.rx);
        let (mut b, n) = rtp(1);
        let n = carrier_tx.protect_rtp(&mut b, n).expect("protect");
        let n = s
            .inbound(Side::Outside, false, &mut b, n)
            .expect("authentic");
        assert_eq!(b[12..n], [0x55; 20]);
        let n = s.outbound(Side::Inside, false, &mut b, n).expect("protect");
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

    /// A new key replaces the context (a packet under the old key no longer authenticates);
    /// the same key keeps it (the replay list still knows the packet).
    #[test]
    fn rekey_replaces_the_context_and_same_key_keeps_it() {
        let suite = Suite::AeadAes128Gcm;
        let old = keys(3, suite);
        let mut s = StreamSrtp::default();
        s.set(Side::Outside, Some(&old));
        let mut peer = context(&old.rx);
        let (mut b, n) = rtp(10);
        let n = peer.protect_rtp(&mut b, n).expect("protect");
        let packet = b;
        s.inbound(Side::Outside, false, &mut b, n).expect("first");
        s.set(Side::Outside, Some(&old));
        let mut again = packet;
        assert_eq!(
            s.inbound(Side::Outside, false, &mut again, n),
            Err(SrtpError::Replayed),
            "same key: same context"
        );
        let new = keys(4, suite);
        s.set(Side::Outside, Some(&new));
        let mut again = packet;
        assert_eq!(
            s.inbound(Side::Outside, false, &mut again, n),
            Err(SrtpError::AuthFailed),
            "new key: the old one no longer decrypts"
        );
        s.set(Side::Outside, None);
        assert!(!s.active());
    }

    fn rtp_from(ssrc: u32, seq: u16) -> ([u8; 64], usize) {
        let (mut b, n) = rtp(seq);
        b[8..12].copy_from_slice(&ssrc.to_be_bytes());
        (b, n)
    }

    /// A re-key while the SSRC goes on keeps the rollover counter in both directions (RFC
    /// 3711 §3.3.1: never reset by a re-key): after the sequence wrapped under the old key,
    /// the first packets under the new one carry ROC 1. The expected packets are built with
    /// the bare transforms at an explicit ROC, so the check does not depend on the context
    /// code under test. A new SSRC after the re-key still starts at ROC 0.
    #[test]
    fn rekey_keeps_the_rollover_counter_of_a_continuing_ssrc() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
            let (old, new) = (keys(5, suite), keys(6, suite));
            let mut s = StreamSrtp::default();
            s.set(Side::Outside, Some(&old));
            let (mut peer_tx, mut peer_rx) = (context(&old.rx), context(&old.tx));
            // Both directions wrap from 65,534 to 1 under the old key (ROC 0 → 1).
            for seq in [65_534, 65_535, 0, 1] {
                let (mut b, n) = rtp(seq);
                let n = peer_tx.protect_rtp(&mut b, n).expect("protect");
                let n = s.inbound(Side::Outside, false, &mut b, n).expect("old key");
                let n = s
                    .outbound(Side::Outside, false, &mut b, n)
                    .expect("protect");
                peer_rx
                    .unprotect_rtp(&mut b[..n])
                    .expect("old key, our side");
            }
            s.set(Side::Outside, Some(&new));
            let to_us = Transform::derive(suite, &new.rx.key, Kind::Rtp);
            let to_peer = Transform::derive(suite, &new.tx.key, Kind::Rtp);
            // The peer goes on with sequence 2 at ROC 1 under its new key.
            let (mut b, n) = rtp(2);
            let n = to_us.protect_rtp(&mut b, 12, n, 7, 1, 2).expect("protect");
            let n = s
                .inbound(Side::Outside, false, &mut b, n)
                .unwrap_or_else(|e| panic!("{suite}: ROC 1 after the re-key: {e}"));
            assert_eq!(b[12..n], [0x55; 20]);
            // What we send it under our new key carries ROC 1 as well.
            let n = s
                .outbound(Side::Outside, false, &mut b, n)
                .expect("protect");
            let m = to_peer
                .unprotect_rtp(&mut b[..n], 12, 7, 1, 2)
                .unwrap_or_else(|e| panic!("{suite}: we sent ROC 1 after the re-key: {e}"));
            assert_eq!(b[12..m], [0x55; 20]);
            // A new SSRC under the new key is a new stream: ROC 0.
            let (mut b, n) = rtp_from(9, 100);
            let n = to_us
                .protect_rtp(&mut b, 12, n, 9, 0, 100)
                .expect("protect");
            s.inbound(Side::Outside, false, &mut b, n)
                .unwrap_or_else(|e| panic!("{suite}: new SSRC at ROC 0: {e}"));
        }
    }

    /// A sender that restarts its index with its new key (ROC 0 while its sequence numbers
    /// go on past a wrap) is still heard after the re-key, and its restarted index then
    /// sticks (its next packets and its own later wrap); a replay of its packet is refused.
    #[test]
    fn rekey_hears_a_sender_that_restarts_its_index() {
        let suite = Suite::AesCm128HmacSha1_80;
        let (old, new) = (keys(7, suite), keys(8, suite));
        let mut s = StreamSrtp::default();
        s.set(Side::Outside, Some(&old));
        let mut peer = context(&old.rx);
        for seq in [65_535, 0, 1] {
            let (mut b, n) = rtp(seq);
            let n = peer.protect_rtp(&mut b, n).expect("protect");
            s.inbound(Side::Outside, false, &mut b, n).expect("old key");
        }
        s.set(Side::Outside, Some(&new));
        // The peer's new context: ROC 0 from sequence 2 on, wrapping again later.
        let mut peer = context(&new.rx);
        for seq in [2, 3, 65_535, 0] {
            let (mut b, n) = rtp(seq);
            let n = peer.protect_rtp(&mut b, n).expect("protect");
            let packet = b;
            s.inbound(Side::Outside, false, &mut b, n)
                .unwrap_or_else(|e| panic!("restarted sender, seq {seq}: {e}"));
            let mut again = packet;
            assert_eq!(
                s.inbound(Side::Outside, false, &mut again, n),
                Err(SrtpError::Replayed)
            );
        }
    }
}
