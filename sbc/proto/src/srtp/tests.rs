//! Known-answer vectors (RFC 3711 Appendix B, RFC 7714 §16–17, libsrtp's `srtp_validate`
//! packets for the RFC 3711 B.3 master key) and properties of the whole context.

use proptest::prelude::*;

use super::cipher::{Kind, Transform, cm_iv, cm_keystream};
use super::{MasterKey, SrtpContext, SrtpError, Suite};

/// Hex to bytes, ignoring whitespace (test data only).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}

fn rfc3711_master(suite: Suite) -> MasterKey {
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    MasterKey::new(
        suite,
        &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
        &salt[..suite.salt_len()],
    )
    .expect("sizes")
}

/// RFC 3711 Appendix B.2: the AES-CM keystream with the salt already shifted, SSRC 0, index 0.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let aes = <aes::Aes128 as aes::cipher::KeyInit>::new(
        (&<[u8; 16]>::try_from(hex("2B7E151628AED2A6ABF7158809CF4F3C")).expect("16")).into(),
    );
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().expect("14");
    let iv = cm_iv(&salt, 0, 0);
    assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
    let mut ks = vec![0u8; 0xFF02 * 16];
    cm_keystream(&aes, &iv, &mut ks);
    assert_eq!(
        ks[..48].to_vec(),
        hex(
            "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB
             41E95B3BB0A2E8DD477901E4FCA894C0"
        )
    );
    assert_eq!(
        ks[0xFEFF * 16..].to_vec(),
        hex(
            "EC8CDF7398607CB0F2D21675EA9EA1E4 362B7C3C6773516318A077D7FC5073AE
             6A2CC3787889374FBEB4C81B17BA6C44"
        )
    );
}

const RTP_PLAIN: &str = "800f1234decafbadcafebabe abababababababababababababababab";
const RTCP_PLAIN: &str = "81c8000bcafebabe abababababababababababababababab";

/// A full AES_CM_128_HMAC_SHA1_80 packet under the RFC 3711 B.3 master key (key derivation,
/// IV, encryption and tag together), both ways; and the same with the 32-bit tag.
#[test]
fn aes_cm_sha1_packets_with_rfc3711_master_key() {
    let protected = hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402
                         b78d6acc99ea179b8dbb");
    for (suite, tag) in [
        (Suite::AesCm128HmacSha1_80, 10),
        (Suite::AesCm128HmacSha1_32, 4),
    ] {
        let plain = hex(RTP_PLAIN);
        let mut tx = SrtpContext::new(suite, &rfc3711_master(suite), None);
        let mut buf = [0u8; 64];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtp(&mut buf, plain.len()).expect("protect");
        assert_eq!(
            buf[..n].to_vec(),
            protected[..plain.len() + tag].to_vec(),
            "{suite}"
        );
        let mut rx = SrtpContext::new(suite, &rfc3711_master(suite), None);
        let n = rx.unprotect_rtp(&mut buf[..n]).expect("unprotect");
        assert_eq!(buf[..n].to_vec(), plain);
    }
}

/// The SRTCP packet (index 1, E set) for the same master key: unprotect, and protect once the
/// sender's index has reached 1.
#[test]
fn aes_cm_srtcp_packet_with_rfc3711_master_key() {
    let suite = Suite::AesCm128HmacSha1_80;
    let protected = hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001
                         993e08cd54d6c1230798");
    let mut rx = SrtpContext::new(suite, &rfc3711_master(suite), None);
    let mut buf = protected.clone();
    let n = rx.unprotect_rtcp(&mut buf).expect("unprotect");
    assert_eq!(buf[..n].to_vec(), hex(RTCP_PLAIN));
    // The same packet again is a replay.
    let mut again = protected.clone();
    assert_eq!(rx.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));

    let mut tx = SrtpContext::new(suite, &rfc3711_master(suite), None);
    let plain = hex(RTCP_PLAIN);
    let mut buf = [0u8; 64];
    buf[..plain.len()].copy_from_slice(&plain);
    tx.protect_rtcp(&mut buf, plain.len()).expect("index 0");
    buf[..plain.len()].copy_from_slice(&plain);
    let n = tx.protect_rtcp(&mut buf, plain.len()).expect("index 1");
    assert_eq!(buf[..n].to_vec(), protected);
}

fn rfc7714_context() -> SrtpContext {
    let key: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f")
        .try_into()
        .expect("16");
    let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().expect("12");
    SrtpContext::from_transforms(
        Suite::AeadAes128Gcm,
        Transform::gcm(&key, salt),
        Transform::gcm(&key, salt),
    )
}

/// RFC 7714 §16.1.1 (encrypt) and §16.1.2 (decrypt): AEAD_AES_128_GCM SRTP.
#[test]
fn rfc7714_16_1_gcm_srtp() {
    let plain = hex("8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e6973
                     20646976697361 20696e207061727465732074726573");
    let protected = hex("8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bca
                         be633bd50d294e6f42a5f47a51c7d19b36de3adf8833
                         899d7f27beb16a9152cf765ee4390cce");
    let mut buf = [0u8; 128];
    buf[..plain.len()].copy_from_slice(&plain);
    let n = rfc7714_context()
        .protect_rtp(&mut buf, plain.len())
        .expect("protect");
    assert_eq!(buf[..n].to_vec(), protected);
    let n = rfc7714_context()
        .unprotect_rtp(&mut buf[..n])
        .expect("unprotect");
    assert_eq!(buf[..n].to_vec(), plain);
}

/// RFC 7714 §17.1 (encrypted) and §17.3 (authenticated only, E clear): AEAD_AES_128_GCM
/// SRTCP with index 0x5d4.
#[test]
fn rfc7714_17_gcm_srtcp() {
    let plain = hex(
        "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61
                     deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
    );
    let encrypted = hex(
        "81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32d
                         c676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf872
                         45d9eade800005d4",
    );
    let tagged = hex(
        "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61
                      deadbeefdeadbeefdeadbeefdeadbeefdeadbeef841dd9683dd78ec92ae58790
                      125f62b3000005d4",
    );
    for packet in [encrypted.clone(), tagged] {
        let mut buf = packet.clone();
        let n = rfc7714_context()
            .unprotect_rtcp(&mut buf)
            .expect("unprotect");
        assert_eq!(buf[..n].to_vec(), plain);
    }
    let t = rfc7714_context();
    let mut buf = [0u8; 128];
    buf[..plain.len()].copy_from_slice(&plain);
    let Transform::Gcm { .. } = t.rtcp_transform() else {
        panic!("gcm")
    };
    let n = t
        .rtcp_transform()
        .protect_rtcp(&mut buf, plain.len(), 0x4d61_7273, 0x5d4)
        .expect("protect");
    assert_eq!(buf[..n].to_vec(), encrypted);
}

/// A corrupted tag (or payload) is refused and changes nothing: the genuine packet that
/// follows is still accepted, and a forged packet far ahead does not move the ROC.
#[test]
fn auth_failure_changes_no_state() {
    for suite in Suite::ALL {
        let key = MasterKey::generate(suite, &mut crate::ids::Rng::from_test_seed(7));
        let mut tx = SrtpContext::new(suite, &key, None);
        let mut rx = SrtpContext::new(suite, &key, None);
        let mut good = Vec::new();
        for seq in [100u16, 101] {
            let mut buf = rtp(seq, 0x1234, &[seq as u8; 40]);
            let len = buf.len() - 32;
            let n = tx.protect_rtp(&mut buf, len).expect("protect");
            buf.truncate(n);
            good.push(buf);
        }
        let mut p = good[0].clone();
        rx.unprotect_rtp(&mut p).expect("first");
        // A forged packet with a sequence number half a cycle ahead.
        let mut forged = good[1].clone();
        forged[2..4].copy_from_slice(&40_000u16.to_be_bytes());
        assert_eq!(
            rx.unprotect_rtp(&mut forged),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        let mut bad = good[1].clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            rx.unprotect_rtp(&mut bad),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        let mut p = good[1].clone();
        let n = rx
            .unprotect_rtp(&mut p)
            .expect("genuine packet after forgeries");
        assert_eq!(p[12..n], [101u8; 40]);
    }
}

/// An RTP packet with `payload` and 32 spare bytes for the trailer.
fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p.extend_from_slice(&[0; 32]);
    p
}

/// The sender's ROC goes to 1 at the 65535 → 0 wrap: the packet after the wrap is exactly what
/// the transform gives with ROC 1 (an independent computation), and the receiver follows.
#[test]
fn roc_advances_across_the_wrap() {
    for suite in Suite::ALL {
        let key = MasterKey::generate(suite, &mut crate::ids::Rng::from_test_seed(3));
        let mut tx = SrtpContext::new(suite, &key, None);
        let mut rx = SrtpContext::new(suite, &key, None);
        let reference = Transform::derive(suite, &key, Kind::Rtp);
        for (k, seq) in (65_530u16..=65_535).chain(0..6).enumerate() {
            let payload = [k as u8; 20];
            let mut buf = rtp(seq, 9, &payload);
            let len = buf.len() - 32;
            let mut expect = buf.clone();
            let n = tx.protect_rtp(&mut buf, len).expect("protect");
            let roc = u32::from(seq < 100);
            let m = reference
                .protect_rtp(&mut expect, 12, len, 9, roc, seq)
                .expect("reference");
            assert_eq!(buf[..n], expect[..m], "{suite} seq {seq}");
            let n = rx.unprotect_rtp(&mut buf[..n]).expect("unprotect");
            assert_eq!(buf[12..n], payload);
        }
        // A late packet from before the wrap is still placed in ROC 0.
        let mut late = rtp(65_529, 9, &[1; 20]);
        let len = late.len() - 32;
        let n = reference
            .protect_rtp(&mut late, 12, len, 9, 0, 65_529)
            .expect("reference");
        assert!(rx.unprotect_rtp(&mut late[..n]).is_ok(), "{suite}");
    }
}

proptest! {
    /// Protect then unprotect gives the packet back, for every suite, any payload, CSRCs and
    /// header extension; and the same packet a second time is refused as a replay.
    #[test]
    fn round_trip_then_replay(
        suite in prop::sample::select(Suite::ALL.to_vec()),
        seed in any::<u64>(),
        seq in any::<u16>(),
        ssrc in any::<u32>(),
        csrcs in 0usize..3,
        ext_words in prop::option::of(0usize..3),
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let key = MasterKey::generate(suite, &mut crate::ids::Rng::from_test_seed(seed));
        let mut tx = SrtpContext::new(suite, &key, None);
        let mut rx = SrtpContext::new(suite, &key, None);
        let mut p = vec![0x80 | csrcs as u8, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend(std::iter::repeat_n(7u8, 4 * csrcs));
        if let Some(words) = ext_words {
            p[0] |= 0x10;
            p.extend_from_slice(&[0xbe, 0xde, 0, words as u8]);
            p.extend(std::iter::repeat_n(5u8, 4 * words));
        }
        let header = p.len();
        p.extend_from_slice(&payload);
        let plain = p.clone();
        p.extend_from_slice(&[0; 16]);
        let n = tx.protect_rtp(&mut p, plain.len()).expect("protect");
        prop_assert_eq!(&p[..header], &plain[..header], "header stays clear");
        if payload.len() >= 8 {
            prop_assert_ne!(&p[header..plain.len()], &plain[header..], "payload encrypted");
        }
        let mut copy = p[..n].to_vec();
        let m = rx.unprotect_rtp(&mut p[..n]).expect("unprotect");
        prop_assert_eq!(&p[..m], &plain[..]);
        prop_assert_eq!(rx.unprotect_rtp(&mut copy), Err(SrtpError::Replayed));

        // RTCP the same way.
        let mut c = vec![0x81, 0xc9, 0, 1];
        c.extend_from_slice(&ssrc.to_be_bytes());
        c.extend_from_slice(&payload);
        let plain = c.clone();
        c.extend_from_slice(&[0; 20]);
        let n = tx.protect_rtcp(&mut c, plain.len()).expect("protect rtcp");
        let mut copy = c[..n].to_vec();
        let m = rx.unprotect_rtcp(&mut c[..n]).expect("unprotect rtcp");
        prop_assert_eq!(&c[..m], &plain[..]);
        prop_assert_eq!(rx.unprotect_rtcp(&mut copy), Err(SrtpError::Replayed));
    }

    /// Arbitrary bytes never panic and never authenticate.
    #[test]
    fn garbage_is_refused(
        suite in prop::sample::select(Suite::ALL.to_vec()),
        mut data in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let key = MasterKey::generate(suite, &mut crate::ids::Rng::from_test_seed(1));
        let mut rx = SrtpContext::new(suite, &key, None);
        let mut copy = data.clone();
        prop_assert!(rx.unprotect_rtp(&mut data).is_err());
        prop_assert!(rx.unprotect_rtcp(&mut copy).is_err());
    }
}

/// The lifetime from `a=crypto` bounds how many packets one key processes.
#[test]
fn lifetime_is_enforced() {
    let suite = Suite::AesCm128HmacSha1_80;
    let key = MasterKey::generate(suite, &mut crate::ids::Rng::from_test_seed(5));
    let mut tx = SrtpContext::new(suite, &key, Some(2));
    for seq in 0..2 {
        let mut p = rtp(seq, 1, &[0; 10]);
        let len = p.len() - 32;
        assert!(tx.protect_rtp(&mut p, len).is_ok());
    }
    let mut p = rtp(2, 1, &[0; 10]);
    let len = p.len() - 32;
    assert_eq!(tx.protect_rtp(&mut p, len), Err(SrtpError::KeyExhausted));
}
