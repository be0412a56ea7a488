//! An SRTP crypto context (RFC 3711 §3.2): the session keys of one master key for one
//! direction of one leg, plus the per-SSRC state (ROC, highest sequence, replay lists, SRTCP
//! index). The relay keeps one for what it receives from a leg (unprotect) and one for what
//! it sends to it (protect).

use super::SrtpError;
use super::cipher::{E_FLAG, Kind, Transform};
use super::index::{RolloverState, index};
use super::key::MasterKey;
use super::replay::ReplayWindow;
use super::suite::Suite;

/// SSRCs tracked per context. A call leg normally has one per direction; a few more cover a
/// PBX that changes SSRC on transfer or hold music. Beyond that the least recently used slot is
/// reused (its next packet then starts with ROC 0 again, as for a new SSRC).
pub const MAX_SSRCS: usize = 8;

/// Largest SRTCP index (31 bits, RFC 3711 §3.4).
const MAX_SRTCP_INDEX: u32 = E_FLAG - 1;

/// The per-SSRC state.
#[derive(Debug, Clone, Copy)]
struct SsrcState {
    ssrc: u32,
    /// Last use, for replacing the least recently used slot.
    used: u64,
    /// SRTP: ROC and highest sequence; `None` before the first RTP packet.
    rtp: Option<RolloverState>,
    rtp_replay: ReplayWindow,
    /// SRTCP: the next index to send.
    rtcp_next: u32,
    rtcp_replay: ReplayWindow,
    /// The RTP state came from the previous key ([`SrtpContext::rekeyed`]) and no packet has
    /// authenticated under this key yet.
    inherited: bool,
}

impl SsrcState {
    fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            used: 0,
            rtp: None,
            rtp_replay: ReplayWindow::default(),
            rtcp_next: 0,
            rtcp_replay: ReplayWindow::default(),
            inherited: false,
        }
    }
}

/// An SRTP/SRTCP crypto context for one direction.
#[derive(Debug)]
pub struct SrtpContext {
    suite: Suite,
    rtp: Transform,
    rtcp: Transform,
    ssrcs: [Option<SsrcState>; MAX_SSRCS],
    clock: u64,
    /// Packets (SRTP and SRTCP) this key may still process (`a=crypto` lifetime).
    remaining: u64,
}

impl SrtpContext {
    /// A context for `suite` keyed with `master`. `lifetime` is the number of packets the key
    /// may process (the `a=crypto` lifetime, capped at the suite's maximum).
    pub fn new(suite: Suite, master: &MasterKey, lifetime: Option<u64>) -> Self {
        Self {
            suite,
            rtp: Transform::derive(suite, master, Kind::Rtp),
            rtcp: Transform::derive(suite, master, Kind::Rtcp),
            ssrcs: [None; MAX_SSRCS],
            clock: 0,
            remaining: lifetime.unwrap_or(u64::MAX).min(suite.max_lifetime()),
        }
    }

    /// The context of a new master key (a re-key by a later offer/answer) that goes on from
    /// this one's packet indices. RFC 3711 §3.3.1: after a re-keying "the rollover counter
    /// always maintains its sequence of values, i.e., it MUST NOT be reset to zero"; the
    /// sender keeps counting its sequence numbers, so a receiver that started again at ROC 0
    /// would reject every packet once the stream had wrapped (and a sender that did would
    /// be rejected by such a receiver). So every known SSRC keeps its ROC and highest
    /// sequence number, and the SRTCP index also goes on. An SSRC first seen under the new
    /// key still starts at ROC 0 (a new SSRC is a new stream, §3.3.1). The replay lists
    /// start empty: they record indices authenticated under the old key, whose packets no
    /// longer authenticate anyway.
    ///
    /// Some senders do restart their index with a new key (a new context per key, ROC 0
    /// while the sequence numbers go on). Until the first packet of an SSRC authenticates
    /// under the new key, unprotect also tries ROC 0 when the continued ROC fails, and keeps
    /// whichever authenticated: the RFC's sender and such a sender both keep being heard.
    pub fn rekeyed(&self, suite: Suite, master: &MasterKey, lifetime: Option<u64>) -> Self {
        let mut next = Self::new(suite, master, lifetime);
        next.clock = self.clock;
        for (to, from) in next.ssrcs.iter_mut().zip(&self.ssrcs) {
            *to = from.map(|s| SsrcState {
                rtp_replay: ReplayWindow::default(),
                rtcp_replay: ReplayWindow::default(),
                inherited: s.rtp.is_some(),
                ..s
            });
        }
        next
    }

    /// A context from session keys directly (RFC test vectors).
    #[cfg(test)]
    pub(crate) fn from_transforms(suite: Suite, rtp: Transform, rtcp: Transform) -> Self {
        Self {
            suite,
            rtp,
            rtcp,
            ssrcs: [None; MAX_SSRCS],
            clock: 0,
            remaining: suite.max_lifetime(),
        }
    }

    /// The SRTCP transform (RFC vectors fix the index, which the context chooses itself).
    #[cfg(test)]
    pub(crate) fn rtcp_transform(&self) -> &Transform {
        &self.rtcp
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Bytes protect adds to an RTP packet.
    pub fn rtp_overhead(&self) -> usize {
        self.rtp.tag_len()
    }

    /// Bytes protect adds to an RTCP packet.
    pub fn rtcp_overhead(&self) -> usize {
        self.rtcp.tag_len() + 4
    }

    /// Protects the RTP packet `buf[..len]` in place; `buf` must have room for the tag.
    /// Returns the SRTP length. The index comes from the packet's own sequence number, its
    /// ROC from the highest one sent so far (RFC 3711 §3.3.1 applied to the sender, so a
    /// reordered input keeps its index).
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let hdr = RtpHeader::parse(buf.get(..len).ok_or(SrtpError::BufferTooSmall)?)?;
        if buf.len() < len + self.rtp.tag_len() {
            return Err(SrtpError::BufferTooSmall);
        }
        self.spend()?;
        let slot = self.slot(hdr.ssrc);
        let (roc, state) = match slot.rtp {
            Some(s) => (s.estimate(hdr.seq), s),
            None => (0, RolloverState::first(hdr.seq)),
        };
        let mut state = state;
        state.accept(roc, hdr.seq);
        slot.rtp = Some(state);
        self.rtp
            .protect_rtp(buf, hdr.len, len, hdr.ssrc, roc, hdr.seq)
    }

    /// Unprotects the SRTP packet `buf` in place: authenticates it first (a packet that does
    /// not verify changes nothing), then checks the replay list, decrypts and records it.
    /// Returns the RTP length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag = self.rtp.tag_len();
        let body = buf.len().checked_sub(tag).ok_or(SrtpError::Malformed)?;
        let hdr = RtpHeader::parse(&buf[..body])?;
        let known = self.find(hdr.ssrc).copied();
        let roc = known.and_then(|s| s.rtp).map_or(0, |s| s.estimate(hdr.seq));
        let i = index(roc, hdr.seq);
        if let Some(k) = known {
            k.rtp_replay.check(i)?;
        }
        if self.remaining == 0 {
            return Err(SrtpError::KeyExhausted);
        }
        let (len, roc, restarted) =
            match self.rtp.unprotect_rtp(buf, hdr.len, hdr.ssrc, roc, hdr.seq) {
                Ok(len) => (len, roc, false),
                // A sender that restarted its index with the new key (see `rekeyed`). A failed
                // check leaves the buffer as it was, so the second one sees the same packet.
                Err(SrtpError::AuthFailed) if roc != 0 && known.is_some_and(|k| k.inherited) => {
                    let len = self.rtp.unprotect_rtp(buf, hdr.len, hdr.ssrc, 0, hdr.seq)?;
                    (len, 0, true)
                }
                Err(e) => return Err(e),
            };
        // Authenticated: now the packet may change state.
        self.remaining -= 1;
        let slot = self.slot(hdr.ssrc);
        let mut state = match slot.rtp {
            Some(s) if !restarted => s,
            // New, or the restarted index replaces the inherited one.
            _ => RolloverState::first(hdr.seq),
        };
        slot.inherited = false;
        state.accept(roc, hdr.seq);
        slot.rtp = Some(state);
        slot.rtp_replay.accept(index(roc, hdr.seq));
        Ok(len)
    }

    /// Protects the compound RTCP packet `buf[..len]` in place (encrypted, E flag set);
    /// `buf` must have room for the trailer. Returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let ssrc = rtcp_ssrc(buf.get(..len).ok_or(SrtpError::BufferTooSmall)?)?;
        if buf.len() < len + self.rtcp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let slot = self.slot(ssrc);
        let index = slot.rtcp_next;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        slot.rtcp_next += 1;
        self.spend()?;
        self.rtcp.protect_rtcp(buf, len, ssrc, index)
    }

    /// Unprotects the SRTCP packet `buf` in place (authentication first). Returns the RTCP
    /// length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let word = self.rtcp.rtcp_trailer(buf)?;
        let ssrc = rtcp_ssrc(buf)?;
        let i = u64::from(word & !E_FLAG);
        if let Some(k) = self.find(ssrc) {
            k.rtcp_replay.check(i)?;
        }
        if self.remaining == 0 {
            return Err(SrtpError::KeyExhausted);
        }
        let len = self.rtcp.unprotect_rtcp(buf, ssrc, word)?;
        self.remaining -= 1;
        self.slot(ssrc).rtcp_replay.accept(i);
        Ok(len)
    }

    fn spend(&mut self) -> Result<(), SrtpError> {
        self.remaining = self
            .remaining
            .checked_sub(1)
            .ok_or(SrtpError::KeyExhausted)?;
        Ok(())
    }

    fn find(&self, ssrc: u32) -> Option<&SsrcState> {
        self.ssrcs.iter().flatten().find(|s| s.ssrc == ssrc)
    }

    /// The slot of `ssrc`, created (replacing the least recently used one) if needed.
    fn slot(&mut self, ssrc: u32) -> &mut SsrcState {
        self.clock += 1;
        let clock = self.clock;
        let at = self
            .ssrcs
            .iter()
            .position(|s| s.is_some_and(|s| s.ssrc == ssrc))
            .or_else(|| self.ssrcs.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                // Full: the least recently used slot goes. `ssrcs` is never empty.
                (0..MAX_SSRCS)
                    .min_by_key(|i| self.ssrcs[*i].map_or(0, |s| s.used))
                    .unwrap_or(0)
            });
        let slot = self.ssrcs[at].get_or_insert(SsrcState::new(ssrc));
        if slot.ssrc != ssrc {
            *slot = SsrcState::new(ssrc);
        }
        slot.used = clock;
        slot
    }
}

/// The parts of an RTP header SRTP needs (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy)]
struct RtpHeader {
    /// Header bytes including CSRCs and the extension: where the payload starts.
    len: usize,
    seq: u16,
    ssrc: u32,
}

impl RtpHeader {
    fn parse(p: &[u8]) -> Result<Self, SrtpError> {
        if p.len() < 12 {
            return Err(SrtpError::Malformed);
        }
        if p[0] >> 6 != 2 {
            return Err(SrtpError::BadVersion);
        }
        let mut len = 12 + 4 * usize::from(p[0] & 0x0f);
        if p[0] & 0x10 != 0 {
            let ext = p.get(len + 2..len + 4).ok_or(SrtpError::Malformed)?;
            len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        if len > p.len() {
            return Err(SrtpError::Malformed);
        }
        Ok(Self {
            len,
            seq: u16::from_be_bytes([p[2], p[3]]),
            ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        })
    }
}

/// The sender SSRC of a compound RTCP packet's first packet (RFC 3550 §6.4).
fn rtcp_ssrc(p: &[u8]) -> Result<u32, SrtpError> {
    if p.len() < 8 {
        return Err(SrtpError::Malformed);
    }
    if p[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    Ok(u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}
