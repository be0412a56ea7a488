//! One direction's session keys (SRTP or SRTCP) and the per-packet transforms: AES-CM with
//! HMAC-SHA1 (RFC 3711 §4.1.1, §4.2.1) and AES-GCM (RFC 7714 §8, §9).
//!
//! Every function works on the caller's buffer; nothing allocates. Header parsing and the
//! per-SSRC state live in `context.rs`: these functions take the positions and numbers it found.

use aes::Aes128;
use aes::cipher::{InnerIvInit as _, KeyInit as _, StreamCipher as _};
use aes_gcm::{AeadInOut as _, Aes128Gcm};
use hmac::{Hmac, Mac as _};
use sha1::Sha1;

use super::SrtpError;
use super::kdf::{self, Label};
use super::key::MasterKey;
use super::suite::Suite;

/// The E flag of the SRTCP trailer word: the payload is encrypted (RFC 3711 §3.4).
pub const E_FLAG: u32 = 0x8000_0000;

/// The keys of one stream kind (RTP or RTCP) in one direction.
#[derive(Clone)]
pub enum Transform {
    /// AES-128 counter mode plus truncated HMAC-SHA1.
    AesCm {
        /// Session encryption key, expanded.
        aes: Aes128,
        /// Session salt (112 bits).
        salt: [u8; 14],
        /// HMAC keyed with the session authentication key; cloned per packet.
        mac: Hmac<Sha1>,
        /// Tag bytes (10 or 4).
        tag_len: usize,
    },
    /// AES-128-GCM with a 16-byte tag.
    Gcm {
        /// The AEAD under the session key.
        aead: Aes128Gcm,
        /// Session salt (96 bits).
        salt: [u8; 12],
    },
}

impl std::fmt::Debug for Transform {
    // Session keys are as secret as the master key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AesCm { tag_len, .. } => write!(f, "AesCm(keys hidden, tag {tag_len})"),
            Self::Gcm { .. } => f.write_str("Gcm(keys hidden)"),
        }
    }
}

/// Which stream kind a transform is for: selects the KDF labels and the tag length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SRTP.
    Rtp,
    /// SRTCP.
    Rtcp,
}

impl Transform {
    /// Derives the session keys of `kind` from `master` for `suite`.
    pub fn derive(suite: Suite, master: &MasterKey, kind: Kind) -> Self {
        let (enc, auth, salt) = match kind {
            Kind::Rtp => (
                Label::RtpEncryption,
                Label::RtpAuthentication,
                Label::RtpSalt,
            ),
            Kind::Rtcp => (
                Label::RtcpEncryption,
                Label::RtcpAuthentication,
                Label::RtcpSalt,
            ),
        };
        let mut key = [0u8; 16];
        kdf::derive(master.key(), master.salt(), enc, &mut key);
        let out = if suite.is_aead() {
            let mut s = [0u8; 12];
            kdf::derive(master.key(), master.salt(), salt, &mut s);
            Self::gcm(&key, s)
        } else {
            let mut s = [0u8; 14];
            kdf::derive(master.key(), master.salt(), salt, &mut s);
            // RFC 3711 §4.3.2: the HMAC-SHA1 session key is 160 bits.
            let mut a = [0u8; 20];
            kdf::derive(master.key(), master.salt(), auth, &mut a);
            let tag_len = match kind {
                Kind::Rtp => suite.rtp_tag_len(),
                Kind::Rtcp => suite.rtcp_tag_len(),
            };
            let out = Self::aes_cm(&key, s, &a, tag_len);
            a.fill(0);
            out
        };
        key.fill(0);
        out
    }

    /// AES-CM from session keys (the RFC vectors give those directly).
    pub fn aes_cm(key: &[u8; 16], salt: [u8; 14], auth: &[u8; 20], tag_len: usize) -> Self {
        Self::AesCm {
            aes: Aes128::new(key.into()),
            salt,
            // HMAC takes keys of any length: this cannot fail.
            mac: <Hmac<Sha1> as hmac::KeyInit>::new_from_slice(auth)
                .expect("HMAC accepts any key length"),
            tag_len,
        }
    }

    /// GCM from session keys.
    pub fn gcm(key: &[u8; 16], salt: [u8; 12]) -> Self {
        Self::Gcm {
            aead: Aes128Gcm::new(key.into()),
            salt,
        }
    }

    /// Tag bytes this transform appends.
    pub fn tag_len(&self) -> usize {
        match self {
            Self::AesCm { tag_len, .. } => *tag_len,
            Self::Gcm { .. } => 16,
        }
    }

    /// Encrypts `buf[header..len]` and appends the tag at `len`: returns the new length.
    /// `roc`/`seq`/`ssrc` give the packet index (RFC 3711 §4.1.1; RFC 7714 §8.1).
    pub fn protect_rtp(
        &self,
        buf: &mut [u8],
        header: usize,
        len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let out = len + self.tag_len();
        if buf.len() < out {
            return Err(SrtpError::BufferTooSmall);
        }
        match self {
            Self::AesCm {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                let index = super::index::index(roc, seq);
                cm_keystream(aes, &cm_iv(salt, ssrc, index), &mut buf[header..len]);
                let mut m = mac.clone();
                m.update(&buf[..len]);
                m.update(&roc.to_be_bytes());
                let tag = m.finalize().into_bytes();
                buf[len..out].copy_from_slice(&tag[..*tag_len]);
            }
            Self::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, ssrc, roc, seq);
                let (aad, rest) = buf.split_at_mut(header);
                let (payload, trailer) = rest.split_at_mut(len - header);
                let tag = aead
                    .encrypt_inout_detached(&iv.into(), aad, payload.into())
                    // Only a payload over 2^36 bytes fails, far beyond any datagram.
                    .map_err(|_| SrtpError::Malformed)?;
                trailer[..16].copy_from_slice(&tag);
            }
        }
        Ok(out)
    }

    /// Authenticates the SRTP packet `buf` (header at `..header`, tag at the end) and, only
    /// if the tag verifies, decrypts its payload in place: returns the plaintext length.
    pub fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        header: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let end = buf
            .len()
            .checked_sub(self.tag_len())
            .filter(|end| *end >= header)
            .ok_or(SrtpError::Malformed)?;
        match self {
            Self::AesCm { aes, salt, mac, .. } => {
                let mut m = mac.clone();
                m.update(&buf[..end]);
                m.update(&roc.to_be_bytes());
                // Constant-time comparison of the truncated tag.
                m.verify_truncated_left(&buf[end..])
                    .map_err(|_| SrtpError::AuthFailed)?;
                let index = super::index::index(roc, seq);
                cm_keystream(aes, &cm_iv(salt, ssrc, index), &mut buf[header..end]);
            }
            Self::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, ssrc, roc, seq);
                let (aad, rest) = buf.split_at_mut(header);
                let (payload, tag) = rest.split_at_mut(end - header);
                let tag: &[u8; 16] = (&*tag).try_into().map_err(|_| SrtpError::Malformed)?;
                // aes-gcm verifies the tag over the ciphertext before it decrypts anything.
                aead.decrypt_inout_detached(&iv.into(), aad, payload.into(), tag.into())
                    .map_err(|_| SrtpError::AuthFailed)?;
            }
        }
        Ok(end)
    }

    /// Encrypts `buf[8..len]` (everything after the first header and its SSRC) and appends
    /// the SRTCP trailer: E flag + `index`, then the tag (AES-CM, RFC 3711 §3.4) or the tag
    /// then E + index (GCM, RFC 7714 §9). Returns the new length.
    pub fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let out = len + 4 + self.tag_len();
        if buf.len() < out {
            return Err(SrtpError::BufferTooSmall);
        }
        let word = (E_FLAG | index).to_be_bytes();
        match self {
            Self::AesCm {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                cm_keystream(aes, &cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&word);
                let mut m = mac.clone();
                m.update(&buf[..len + 4]);
                let tag = m.finalize().into_bytes();
                buf[len + 4..out].copy_from_slice(&tag[..*tag_len]);
            }
            Self::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&word);
                let tag = aead
                    .encrypt_inout_detached(&iv.into(), &aad, (&mut buf[8..len]).into())
                    .map_err(|_| SrtpError::Malformed)?;
                buf[len..len + 16].copy_from_slice(&tag);
                buf[len + 16..out].copy_from_slice(&word);
            }
        }
        Ok(out)
    }

    /// Reads the SRTCP trailer word (E flag and 31-bit index) of a protected packet without
    /// trusting it: the caller uses it to check the replay list, then [`Self::unprotect_rtcp`]
    /// authenticates it.
    pub fn rtcp_trailer(&self, buf: &[u8]) -> Result<u32, SrtpError> {
        let at = match self {
            Self::AesCm { tag_len, .. } => buf.len().checked_sub(tag_len + 4),
            Self::Gcm { .. } => buf.len().checked_sub(4),
        }
        .filter(|at| *at >= 8 + if self.is_gcm() { 16 } else { 0 })
        .ok_or(SrtpError::Malformed)?;
        let word = buf
            .get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .ok_or(SrtpError::Malformed)?;
        Ok(u32::from_be_bytes(word))
    }

    /// Authenticates the SRTCP packet `buf` whose trailer word is `word` and, if it verifies
    /// and the E flag is set, decrypts it in place: returns the compound RTCP length.
    pub fn unprotect_rtcp(&self, buf: &mut [u8], ssrc: u32, word: u32) -> Result<usize, SrtpError> {
        let index = word & !E_FLAG;
        let encrypted = word & E_FLAG != 0;
        match self {
            Self::AesCm {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                let auth_end = buf
                    .len()
                    .checked_sub(*tag_len)
                    .filter(|e| *e >= 12)
                    .ok_or(SrtpError::Malformed)?;
                let mut m = mac.clone();
                m.update(&buf[..auth_end]);
                m.verify_truncated_left(&buf[auth_end..])
                    .map_err(|_| SrtpError::AuthFailed)?;
                let end = auth_end - 4;
                if encrypted {
                    cm_keystream(aes, &cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..end]);
                }
                Ok(end)
            }
            Self::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let end = buf
                    .len()
                    .checked_sub(20)
                    .filter(|e| *e >= 8)
                    .ok_or(SrtpError::Malformed)?;
                let mut tag = [0u8; 16];
                tag.copy_from_slice(&buf[end..end + 16]);
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&buf[..8]);
                    aad[8..].copy_from_slice(&word.to_be_bytes());
                    aead.decrypt_inout_detached(
                        &iv.into(),
                        &aad,
                        (&mut buf[8..end]).into(),
                        (&tag).into(),
                    )
                    .map_err(|_| SrtpError::AuthFailed)?;
                } else {
                    // Unencrypted SRTCP (RFC 7714 §9.2): the whole packet and the trailer word
                    // are the associated data. Move the word next to the packet so the AAD is
                    // one slice; the buffer is ours and a failing packet is dropped anyway.
                    buf[end..end + 4].copy_from_slice(&word.to_be_bytes());
                    aead.decrypt_inout_detached(
                        &iv.into(),
                        &buf[..end + 4],
                        (&mut [][..]).into(),
                        (&tag).into(),
                    )
                    .map_err(|_| SrtpError::AuthFailed)?;
                }
                Ok(end)
            }
        }
    }

    fn is_gcm(&self) -> bool {
        matches!(self, Self::Gcm { .. })
    }
}

/// The AES-CM IV: (k_s·2^16) XOR (SSRC·2^64) XOR (i·2^16) (RFC 3711 §4.1.1).
pub fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *d ^= s;
    }
    for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *d ^= s;
    }
    iv
}

/// XORs the AES-CM keystream starting at `iv` into `data`.
pub fn cm_keystream(aes: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    let core = ctr::CtrCore::<&Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(aes, iv.into());
    let mut ctr = ctr::Ctr128BE::<&Aes128>::from_core(core);
    ctr.apply_keystream(data);
}

/// The GCM IV for SRTP: (0x0000 || SSRC || ROC || SEQ) XOR salt (RFC 7714 §8.1).
pub fn gcm_rtp_iv(salt: &[u8; 12], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    for (d, s) in iv.iter_mut().zip(salt) {
        *d ^= s;
    }
    iv
}

/// The GCM IV for SRTCP: (0x0000 || SSRC || 0x0000 || 0 || index) XOR salt (RFC 7714 §9.1).
pub fn gcm_rtcp_iv(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&(index & !E_FLAG).to_be_bytes());
    for (d, s) in iv.iter_mut().zip(salt) {
        *d ^= s;
    }
    iv
}
