//! Session keys from a master key: the AES-CM pseudo-random function of RFC 3711 §4.3.
//!
//! Only a key derivation rate of 0 is supported (keys are derived once per master key), which
//! is the `a=crypto` default; an offer asking for another rate (`KDR=`) is refused in SDES.
//! AEAD suites use the same function with their 96-bit salt padded by 16 zero bits
//! (RFC 7714 §11, as libsrtp does).

use aes::Aes128;
use aes::cipher::{InnerIvInit as _, KeyInit as _, StreamCipher as _};

/// What a derived key is for (RFC 3711 §4.3.1 and §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Label {
    /// SRTP encryption key.
    RtpEncryption = 0x00,
    /// SRTP authentication key.
    RtpAuthentication = 0x01,
    /// SRTP salt.
    RtpSalt = 0x02,
    /// SRTCP encryption key.
    RtcpEncryption = 0x03,
    /// SRTCP authentication key.
    RtcpAuthentication = 0x04,
    /// SRTCP salt.
    RtcpSalt = 0x05,
}

/// Fills `out` with the key for `label` (index 0, rate 0): the AES-CM keystream under the
/// master key starting at IV = (master_salt XOR label·2^48)·2^16.
pub fn derive(master_key: &[u8; 16], master_salt: &[u8], label: Label, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    // A 96-bit salt sits in the top bits like a 112-bit one, zero-padded (RFC 7714 §11).
    let n = master_salt.len().min(14);
    iv[..n].copy_from_slice(&master_salt[..n]);
    // key_id = label || r (48 bits, 0 with rate 0) is right-aligned in the 112-bit salt.
    iv[7] ^= label as u8;
    let aes = Aes128::new(master_key.into());
    let core = ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(aes, &iv.into());
    let mut ctr = ctr::Ctr128BE::<Aes128>::from_core(core);
    out.fill(0);
    ctr.apply_keystream(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::tests::hex;

    /// RFC 3711 Appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let key: [u8; 16] = hex("E1F97A0D3E018BE0D64FA32C06DE4139")
            .try_into()
            .expect("16 bytes");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&key, &salt, Label::RtpEncryption, &mut enc);
        assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, Label::RtpSalt, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        derive(&key, &salt, Label::RtpAuthentication, &mut auth);
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }
}
