//! SRTP termination per leg (SDES, RFC 4568): what each leg's SDP says about encryption, and
//! the `a=crypto` lines the SBC writes in its own.
//!
//! The SBC never passes one leg's keys to the other: that would let the carrier decrypt the
//! PBX's leg (and reveal that the PBX uses SRTP at all). Instead every leg gets its own keys
//! from the CSPRNG and the relay decrypts and re-encrypts (RTP⇄SRTP, SRTP⇄SRTP). Per stream
//! and leg the negotiation keeps:
//! - `rx`: the key the peer sends with (its `a=crypto` line, offer or answer);
//! - `tx`: the key the SBC sends to it with (the line the SBC wrote in its answer or, once
//!   answered, the offered line the peer accepted).
//!
//! It runs after `sdp::rewrite` has produced the body for the other leg (which the SDP policy
//! already stripped of `a=crypto`): the offer's or answer's transport and crypto lines are
//! then set for the receiving leg's policy. Refusals are 488 (RFC 4568 §7.1.2: an offer
//! without usable crypto where SRTP is required, or a `RTP/SAVP` offer where SRTP is off).

use super::B2buaConfig;
use crate::{
    net::Side,
    sdp::{Crypto, CryptoRefusal, Sdp, SdpEditor, SdpError},
    srtp::{KeySpec, MasterKey, SrtpMode, SrtpPolicy, StreamKeys},
};

/// Whether an SDP body is an offer or an answer (the call site knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SdpRole {
    /// A new offer (initial or re-offer): fresh negotiation.
    Offer,
    /// The answer to the last offer the SBC sent to the answering leg.
    Answer,
}

/// Why SRTP negotiation refuses an SDP body (the call gets 488).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SrtpRefusal {
    /// The side's policy is `mandatory` (or the stream is `RTP/SAVP`) and no `a=crypto` line
    /// is usable.
    #[error("SRTP required but no usable a=crypto")]
    Required(Option<CryptoRefusal>),
    /// `RTP/SAVP` toward a side whose policy is `off`.
    #[error("SRTP offered but off for this side")]
    Off,
    /// An answer's `a=crypto` is unusable or names no line the SBC offered.
    #[error("unusable a=crypto in answer: {0}")]
    Answer(CryptoRefusal),
    /// The body could not be parsed or edited.
    #[error("SDP: {0}")]
    Sdp(#[from] SdpError),
}

impl SrtpRefusal {
    /// Metric label (bounded set, `sbc_border_refusals_total{reason}`).
    pub(super) const fn as_str(&self) -> &'static str {
        match self {
            Self::Required(None) => "srtp_required",
            Self::Required(Some(r)) | Self::Answer(r) => r.as_str(),
            Self::Off => "srtp_off",
            Self::Sdp(_) => "sdp_malformed",
        }
    }
}

/// One stream on one leg.
#[derive(Debug, Clone, Default)]
struct StreamNeg {
    rx: Option<Crypto>,
    tx: Option<Crypto>,
    /// Lines the SBC offered to this leg, awaiting its answer.
    offered: Vec<Crypto>,
    /// The transport the peer offered (echoed in the SBC's answer to it).
    peer_proto: Option<String>,
}

/// The SRTP state of a call. Boxed, made by the first body that negotiates SRTP: a plain call
/// never does, and every concurrent call holds its `Call` (a pointer inline instead of 56
/// bytes).
#[derive(Debug, Clone, Default)]
pub(super) struct CallSrtp(Option<Box<Negotiation>>);

/// What [`CallSrtp`] holds once SRTP is negotiated: per leg (`[inside, outside]`), per `m=`
/// line.
#[derive(Debug, Clone, Default)]
struct Negotiation {
    legs: [Vec<StreamNeg>; 2],
    /// A leg the SBC sent an offer to and whose answer is still to come.
    awaiting: [bool; 2],
}

const fn idx(side: Side) -> usize {
    match side {
        Side::Inside => 0,
        Side::Outside => 1,
    }
}

/// The policy of `side`: `[pbx]` inside, the call's trunk outside (off for a carrier that is
/// no configured trunk).
pub(super) fn policy(cfg: &B2buaConfig, side: Side, trunk: Option<usize>) -> &SrtpPolicy {
    static OFF: std::sync::OnceLock<SrtpPolicy> = std::sync::OnceLock::new();
    match side {
        Side::Inside => &cfg.pbx_srtp,
        Side::Outside => match trunk.and_then(|t| cfg.trunks.get(t)) {
            Some(t) => &t.srtp,
            None => OFF.get_or_init(SrtpPolicy::default),
        },
    }
}

/// RTP transports the SBC terminates SRTP for; anything else (T.38 `udptl`, DTLS-SRTP
/// `UDP/TLS/RTP/SAVP`) is left as it is.
fn rtp_profile(proto: &str) -> Option<(bool, bool)> {
    match proto {
        "RTP/AVP" => Some((false, false)),
        "RTP/AVPF" => Some((false, true)),
        "RTP/SAVP" => Some((true, false)),
        "RTP/SAVPF" => Some((true, true)),
        _ => None,
    }
}

fn proto(secure: bool, feedback: bool) -> &'static str {
    match (secure, feedback) {
        (false, false) => "RTP/AVP",
        (false, true) => "RTP/AVPF",
        (true, false) => "RTP/SAVP",
        (true, true) => "RTP/SAVPF",
    }
}

impl CallSrtp {
    /// Whether any stream of the call has SRTP keys the SBC holds (see [`Negotiation::keyed`]).
    pub(super) fn keyed(&self) -> bool {
        self.0.as_ref().is_some_and(|n| n.keyed())
    }

    /// Forgets what was negotiated with `side` (see [`Negotiation::reset`]).
    pub(super) fn reset(&mut self, side: Side) {
        if let Some(n) = &mut self.0 {
            n.reset(side);
        }
    }

    /// Whether the SBC's last offer to `side` awaits its answer.
    pub(super) fn awaits_answer_from(&self, side: Side) -> bool {
        self.0.as_ref().is_some_and(|n| n.awaiting[idx(side)])
    }

    /// Handles an SDP body (see [`Negotiation::on_sdp`]), making the state on first use.
    pub(super) fn on_sdp(
        &mut self,
        crossing: Crossing<'_>,
        out: &mut Vec<u8>,
        policies: (&SrtpPolicy, &SrtpPolicy),
        rng: &mut super::Rng,
    ) -> Result<(), SrtpRefusal> {
        self.0
            .get_or_insert_default()
            .on_sdp(crossing, out, policies, rng)
    }

    /// Which of `side`'s streams negotiate SRTP (none before any SRTP negotiation).
    pub(super) fn secure(&self, side: Side) -> Vec<bool> {
        self.0.as_ref().map_or_else(Vec::new, |n| n.secure(side))
    }

    /// The keys of `side`'s streams for the relay (none before any SRTP negotiation).
    pub(super) fn keys(&self, side: Side) -> Vec<Option<StreamKeys>> {
        self.0.as_ref().map_or_else(Vec::new, |n| n.keys(side))
    }
}

impl Negotiation {
    /// Whether any stream of the call has SRTP keys the SBC holds (such a call's state is not
    /// restorable: keys are never persisted).
    fn keyed(&self) -> bool {
        self.legs
            .iter()
            .flatten()
            .any(|s| s.rx.is_some() || s.tx.is_some() || !s.offered.is_empty())
    }

    /// Forgets what was negotiated with `side`: its leg starts afresh (failover to another
    /// trunk, whose keys are its own).
    fn reset(&mut self, side: Side) {
        self.legs[idx(side)].clear();
        self.awaiting[idx(side)] = false;
    }

    /// Handles an SDP body `body` from `from` whose rewritten form for `to` is `out`: reads
    /// `from`'s crypto against its policy and sets the transport and `a=crypto` lines of `out`
    /// for `to`'s policy (new keys from `rng` where the SBC offers or answers).
    fn on_sdp(
        &mut self,
        crossing: Crossing<'_>,
        out: &mut Vec<u8>,
        policies: (&SrtpPolicy, &SrtpPolicy),
        rng: &mut super::Rng,
    ) -> Result<(), SrtpRefusal> {
        let Crossing {
            role,
            from,
            to,
            body,
            ..
        } = crossing;
        let (pol_from, pol_to) = policies;
        let parsed = Sdp::parse(body)?;
        for (i, m) in parsed.media().enumerate() {
            let desc = m.desc()?;
            let crypto: Vec<&str> = m
                .attributes()
                .filter(|(n, _)| *n == "crypto")
                .filter_map(|(_, v)| v)
                .collect();
            let streams = &mut self.legs[idx(from)];
            if streams.len() <= i {
                streams.resize_with(i + 1, StreamNeg::default);
            }
            let st = &mut streams[i];
            let profile = rtp_profile(desc.proto);
            if desc.port == 0 || profile.is_none() {
                st.rx = None;
                st.tx = None;
                continue;
            }
            let secure = profile.is_some_and(|(s, _)| s);
            match role {
                SdpRole::Offer => {
                    st.peer_proto = Some(desc.proto.to_owned());
                    offer_in(st, secure, &crypto, pol_from, rng)?;
                }
                SdpRole::Answer => answer_in(st, &crypto, pol_from)?,
            }
        }
        if role == SdpRole::Answer {
            self.awaiting[idx(from)] = false;
        }
        self.write(role, to, out, pol_to, rng)
    }

    /// Sets the transport and crypto lines of `out` (for `to`).
    fn write(
        &mut self,
        role: SdpRole,
        to: Side,
        out: &mut Vec<u8>,
        pol_to: &SrtpPolicy,
        rng: &mut super::Rng,
    ) -> Result<(), SrtpRefusal> {
        let text = std::mem::take(out);
        let parsed = Sdp::parse(&text)?;
        let mut ed = SdpEditor::new(&parsed);
        let streams = &mut self.legs[idx(to)];
        for (i, m) in parsed.media().enumerate() {
            let desc = m.desc()?;
            // Whatever the policy, no key line written by anyone else crosses.
            ed.remove_attributes(i, "crypto")?;
            if streams.len() <= i {
                streams.resize_with(i + 1, StreamNeg::default);
            }
            let st = &mut streams[i];
            let Some((_, feedback)) = rtp_profile(desc.proto) else {
                continue;
            };
            match role {
                SdpRole::Offer => {
                    let secure = pol_to.mode == SrtpMode::Mandatory;
                    ed.set_proto(i, proto(secure, feedback))?;
                    let previous = std::mem::take(&mut st.offered);
                    if pol_to.mode != SrtpMode::Off && desc.port != 0 {
                        for (n, suite) in pol_to.suites.iter().enumerate() {
                            // A re-offer keeps the key of a suite already offered, or the
                            // one the SBC sends with (it answered the peer's offer), so that
                            // a peer answering with that suite keeps its context (and ROC).
                            let kept = previous.iter().find(|c| c.suite == *suite).cloned();
                            let sending = st.tx.as_ref().filter(|c| c.suite == *suite);
                            let line = kept.unwrap_or_else(|| Crypto {
                                tag: n as u32 + 1,
                                suite: *suite,
                                key: sending.map_or_else(
                                    || MasterKey::generate(*suite, rng),
                                    |c| c.key.clone(),
                                ),
                                lifetime: None,
                            });
                            ed.add_attribute(i, &format!("crypto:{}", line.to_value()))?;
                            st.offered.push(line);
                        }
                    }
                }
                SdpRole::Answer => {
                    if let Some(p) = &st.peer_proto {
                        ed.set_proto(i, p)?;
                    }
                    if let Some(tx) = &st.tx {
                        ed.add_attribute(i, &format!("crypto:{}", tx.to_value()))?;
                    }
                }
            }
        }
        if role == SdpRole::Offer {
            self.awaiting[idx(to)] = true;
        }
        ed.write(out);
        Ok(())
    }

    /// Which of `side`'s streams negotiate SRTP (the SBC offered or accepted a key on them):
    /// the relay holds their media until the answer settles the keys.
    fn secure(&self, side: Side) -> Vec<bool> {
        self.legs[idx(side)]
            .iter()
            .map(|st| st.rx.is_some() || st.tx.is_some() || !st.offered.is_empty())
            .collect()
    }

    /// The keys of `side`'s streams for the relay.
    fn keys(&self, side: Side) -> Vec<Option<StreamKeys>> {
        let spec = |c: &Crypto| KeySpec {
            suite: c.suite,
            key: c.key.clone(),
            lifetime: c.lifetime,
        };
        self.legs[idx(side)]
            .iter()
            .map(|st| match (&st.rx, &st.tx) {
                (Some(rx), Some(tx)) => Some(StreamKeys {
                    rx: spec(rx),
                    tx: spec(tx),
                }),
                _ => None,
            })
            .collect()
    }
}

/// An offer's stream from a peer: pick its most preferred usable line and answer it with a
/// key of the SBC's own (kept from the last negotiation when the suite is the same).
fn offer_in(
    st: &mut StreamNeg,
    secure: bool,
    lines: &[&str],
    pol: &SrtpPolicy,
    rng: &mut super::Rng,
) -> Result<(), SrtpRefusal> {
    if pol.mode == SrtpMode::Off {
        st.rx = None;
        st.tx = None;
        return if secure {
            Err(SrtpRefusal::Off)
        } else {
            Ok(())
        };
    }
    let mut first_refusal = None;
    let mut usable = Vec::new();
    for line in lines {
        match Crypto::parse(line) {
            Ok(c) if pol.suites.contains(&c.suite) => usable.push(c),
            Ok(_) => {
                first_refusal.get_or_insert(CryptoRefusal::UnsupportedSuite);
            }
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    let chosen = pol
        .suites
        .iter()
        .find_map(|s| usable.iter().find(|c| c.suite == *s).cloned());
    let Some(chosen) = chosen else {
        st.rx = None;
        st.tx = None;
        if secure || pol.mode == SrtpMode::Mandatory {
            return Err(SrtpRefusal::Required(first_refusal));
        }
        return Ok(());
    };
    let key = match &st.tx {
        Some(tx) if tx.suite == chosen.suite => tx.key.clone(),
        _ => MasterKey::generate(chosen.suite, rng),
    };
    st.tx = Some(Crypto {
        tag: chosen.tag,
        suite: chosen.suite,
        key,
        lifetime: None,
    });
    st.rx = Some(chosen);
    Ok(())
}

/// An answer's stream: its line must accept one the SBC offered (same tag and suite).
fn answer_in(st: &mut StreamNeg, lines: &[&str], pol: &SrtpPolicy) -> Result<(), SrtpRefusal> {
    let Some(line) = lines.first() else {
        st.rx = None;
        st.tx = None;
        if pol.mode == SrtpMode::Mandatory {
            return Err(SrtpRefusal::Required(None));
        }
        return Ok(());
    };
    let answer = Crypto::parse(line).map_err(SrtpRefusal::Answer)?;
    let ours = st
        .offered
        .iter()
        .find(|c| c.tag == answer.tag && c.suite == answer.suite)
        .cloned()
        .ok_or(SrtpRefusal::Answer(CryptoRefusal::UnsupportedSuite))?;
    st.tx = Some(ours);
    st.rx = Some(answer);
    Ok(())
}

/// One SDP body crossing the B2BUA: its role, the leg it came from, the leg its rewritten form
/// goes to, and the received bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Crossing<'b> {
    /// When it crosses (the relay's clock for what it is told).
    pub(super) now: std::time::Instant,
    /// Offer or answer.
    pub(super) role: SdpRole,
    /// The leg that sent it.
    pub(super) from: Side,
    /// The leg the rewritten body goes to.
    pub(super) to: Side,
    /// The body as received.
    pub(super) body: &'b [u8],
}

/// Searchers for the SRTP markers, built once (`memmem::find` builds one per call).
static SAVP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"SAVP"));
static CRYPTO: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"a=crypto"));

/// The call-site entry point: runs [`CallSrtp::on_sdp`] with both sides' policies (`trunk` is
/// the call's trunk); when the body is an offer, tells the relay which streams await keys (it
/// holds their media meanwhile), and when it is an answer, hands both legs' keys to it.
pub(super) fn negotiate(
    cfg: &B2buaConfig,
    rng: &mut super::Rng,
    srtp: &mut CallSrtp,
    trunk: Option<super::admission::TrunkId>,
    crossing: Crossing<'_>,
    out: &mut Vec<u8>,
    media: Option<(
        &mut crate::media::MediaTable,
        Option<crate::media::SessionId>,
    )>,
) -> Result<(), super::SdpProblem> {
    let trunk = trunk.map(super::admission::TrunkId::index);
    let policies = (
        policy(cfg, crossing.from, trunk),
        policy(cfg, crossing.to, trunk),
    );
    // Neither side does SRTP and the body asks for none: nothing to negotiate, and no second
    // parse of the body on the per-call path (`cargo xtask bench check` counts it).
    let plain = |p: &SrtpPolicy| p.mode == SrtpMode::Off;
    if plain(policies.0)
        && plain(policies.1)
        && SAVP.find(crossing.body).is_none()
        && CRYPTO.find(crossing.body).is_none()
    {
        return Ok(());
    }
    srtp.on_sdp(crossing, out, policies, rng)
        .map_err(|r| super::SdpProblem::Srtp(r.as_str()))?;
    let Some((media, Some(session))) = media else {
        return Ok(());
    };
    for side in [Side::Inside, Side::Outside] {
        let done = match crossing.role {
            SdpRole::Offer => media.expect_crypto(crossing.now, session, side, &srtp.secure(side)),
            SdpRole::Answer => media.set_crypto(crossing.now, session, side, &srtp.keys(side)),
        };
        done.map_err(|_| super::SdpProblem::Srtp("srtp_relay"))?;
    }
    Ok(())
}

/// The role of an SDP body in a response from `callee`: the answer to the SBC's offer, or an
/// offer of its own (a 2xx to an INVITE without SDP).
pub(super) fn response_role(srtp: &CallSrtp, callee: Side) -> SdpRole {
    if srtp.awaits_answer_from(callee) {
        SdpRole::Answer
    } else {
        SdpRole::Offer
    }
}
