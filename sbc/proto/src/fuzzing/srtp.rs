//! SDES and SRTP as an attacker meets them: arbitrary `a=crypto` values through the parser, and
//! arbitrary datagrams through unprotect under a key the input does not know.

use crate::ids::Rng;
use crate::sdp::Crypto;
use crate::srtp::{MasterKey, SrtpContext, Suite};

/// Input: the first byte picks a suite, the rest is both an `a=crypto` value and a packet.
///
/// - A value that parses writes back to a value that parses to the same line (no key or
///   parameter is lost or invented in writing).
/// - The bytes as SRTP and SRTCP never authenticate under a fresh random key and never panic;
///   a genuine packet protected after them still round-trips (a refused input changed no
///   state).
pub fn srtp(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest)
        && let Ok(c) = Crypto::parse(text)
    {
        let again = Crypto::parse(&c.to_value()).expect("our own line parses");
        assert_eq!(
            (again.tag, again.suite, &again.key),
            (c.tag, c.suite, &c.key),
            "line changed in writing"
        );
    }
    let suite = Suite::ALL[usize::from(pick) % Suite::ALL.len()];
    let key = MasterKey::generate(suite, &mut Rng::from_test_seed(u64::from(pick)));
    let mut rx = SrtpContext::new(suite, &key, None);
    let mut tx = SrtpContext::new(suite, &key, None);
    let mut buf = rest.to_vec();
    assert!(rx.unprotect_rtp(&mut buf).is_err(), "forged SRTP accepted");
    let mut buf = rest.to_vec();
    assert!(
        rx.unprotect_rtcp(&mut buf).is_err(),
        "forged SRTCP accepted"
    );
    let mut p = [0u8; 64];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&[pick, pick]);
    let n = tx.protect_rtp(&mut p, 20).expect("room for the tag");
    assert_eq!(
        rx.unprotect_rtp(&mut p[..n]),
        Ok(20),
        "genuine packet refused"
    );
}

#[cfg(test)]
mod tests {
    /// The committed seeds hold the properties (and stay parseable by the target).
    #[test]
    fn seeds() {
        super::srtp(include_bytes!("../../../../fuzz/corpus/srtp/crypto-line"));
        super::srtp(include_bytes!("../../../../fuzz/corpus/srtp/srtp-packet"));
        super::srtp(b"");
        super::srtp(b"\x00");
    }
}
