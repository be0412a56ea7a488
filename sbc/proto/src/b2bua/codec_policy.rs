//! Codec policy on the way through the B2BUA (RFC 3264 §5.1, §6.1), one step of offer/answer
//! like `srtp_policy.rs`: which payload types of each RTP section cross, in which order, and
//! with which numbers, plus the payload-type rewrites the relay makes per direction.
//!
//! - An offer crosses with the codecs both sides' policies allow (`[pbx]` and the call's
//!   trunk, `media_policy.rs`), in the receiving side's order of preference (else the
//!   sender's, else as offered). A section left with no real codec refuses the offer (488).
//! - An answer crosses with the same filter, and with each codec renumbered to the number the
//!   offerer gave it: every leg sees its own numbering mirrored, and the relay rewrites the RTP
//!   payload type between the numbers each side declared (`PayloadMap`), e.g. DTMF as
//!   `telephone-event` 101 inside and 96 outside.
//!
//! - DTMF between a side configured `rfc4733` and one configured `info`
//!   (`dtmf_interwork.rs`): `telephone-event` is removed from what the `info` side gets, and
//!   added (when missing) to what the `rfc4733` side gets, so that the relay can generate and
//!   detect the events the `info` side signals as INFO.
//!
//! Only RTP sections with a port are touched: T.38 (`udptl`) and disabled sections cross as
//! they are. `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` go with their payload type; session and media
//! attributes such as `a=ptime` are kept.

use crate::{
    media::{StreamPayloadMaps, dtmf::StreamDtmf},
    net::Side,
    sdp::{CodecPolicy, CodecRefusal, CodecSpec, Media, PayloadMap, Sdp, codecs},
};

use super::{B2buaConfig, CodecRecord, CodecsSnapshot, media_policy};

/// What the codec policy changes in one media section of a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FormatEdit {
    /// Payload types kept, in order (None: the section's format list is left as it is).
    pub(super) keep: Option<Vec<String>>,
    /// Payload types renumbered after filtering, `(received, written)`.
    pub(super) renumber: Vec<(u8, u8)>,
    /// A `telephone-event/8000` payload type the SBC adds (it terminates DTMF for that leg).
    pub(super) add_event: Option<u8>,
}

/// What crossing from one DTMF method to another does to `telephone-event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DtmfStep {
    /// Nothing.
    Keep,
    /// Removed: the receiving side takes INFO.
    Strip,
    /// Added if missing: the receiving side takes RFC 4733 from the SBC.
    Add,
}

fn dtmf_step(cfg: &B2buaConfig, trunk: Option<usize>, from: Side) -> DtmfStep {
    use super::DtmfMode::{Info, Rfc4733};
    let sender = media_policy::of(cfg, from, trunk).dtmf;
    let receiver = media_policy::of(cfg, from.other(), trunk).dtmf;
    match (sender, receiver) {
        (Rfc4733, Info) => DtmfStep::Strip,
        (Info, Rfc4733) => DtmfStep::Add,
        _ => DtmfStep::Keep,
    }
}

fn is_event(c: &crate::sdp::Codec<'_>) -> bool {
    c.name.eq_ignore_ascii_case("telephone-event") && c.clock_rate == 8000
}

/// `keep` (None: every codec of `all`) without `telephone-event`.
fn strip_events(keep: Option<Vec<u8>>, all: &[crate::sdp::Codec<'_>]) -> Option<Vec<u8>> {
    let keep = keep.unwrap_or_else(|| all.iter().map(|c| c.payload_type).collect());
    Some(
        keep.into_iter()
            .filter(|pt| !all.iter().any(|c| c.payload_type == *pt && is_event(c)))
            .collect(),
    )
}

/// The payload types `m` lists.
fn used_payload_types(m: &Media<'_, '_>) -> Vec<u8> {
    m.desc()
        .map(|d| d.format_list().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default()
}

/// A dynamic payload type free in `m` for an added `telephone-event`: the receiving side's
/// `wanted` number, else 101, else the first free one.
fn free_dynamic(m: &Media<'_, '_>, wanted: Option<u8>) -> Option<u8> {
    let used = used_payload_types(m);
    wanted
        .into_iter()
        .chain(std::iter::once(101))
        .chain(96..=127)
        .find(|pt| !used.contains(pt))
}

/// The renumbering of an offer's `telephone-event` to the receiving side's `wanted` number
/// (`(offered, wanted)`), when the offer numbers it otherwise and `wanted` is free in the
/// section (a number taken by another codec keeps the offer's; the relay maps either way).
fn event_renumbering(
    m: &Media<'_, '_>,
    all: &[crate::sdp::Codec<'_>],
    written: Option<&[u8]>,
    wanted: Option<u8>,
) -> Vec<(u8, u8)> {
    let Some(wanted) = wanted else {
        return Vec::new();
    };
    let used = used_payload_types(m);
    if used.contains(&wanted) {
        return Vec::new();
    }
    all.iter()
        .filter(|c| is_event(c) && written.is_none_or(|w| w.contains(&c.payload_type)))
        .map(|c| (c.payload_type, wanted))
        .take(1)
        .collect()
}

/// Why the codec policy refused a body: the section that was left without a codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NoCommonCodec {
    /// The `m=` line, 0-based.
    pub(super) index: usize,
}

/// The codec state of one call.
#[derive(Debug, Clone, Default)]
pub(super) struct CallCodecs {
    /// Per side (`[inside, outside]`), per `m=` line: the codecs its last SDP declared that
    /// crossed, in its own numbering.
    declared: [Vec<Vec<CodecSpec>>; 2],
    /// The side the SBC sent the last offer to, while its answer is awaited.
    awaiting: Option<Side>,
    /// The side whose answer was last seen (an answer repeated in the 2xx after an 18x).
    answered: Option<Side>,
    /// Per `m=` line, the rewrites in force since the last answer.
    maps: Vec<StreamPayloadMaps>,
    /// Per `m=` line, the legs whose DTMF the relay terminates since the last answer.
    dtmf: Vec<StreamDtmf>,
    /// The DTMF method of each side (`[inside, outside]`) the last answer was shaped for.
    modes: Option<[super::DtmfMode; 2]>,
}

const fn idx(side: Side) -> usize {
    match side {
        Side::Inside => 0,
        Side::Outside => 1,
    }
}

/// Whether the codec policy applies to a section: RTP (any profile) with a port.
fn is_rtp(m: &Media<'_, '_>) -> bool {
    m.desc()
        .is_ok_and(|d| d.port != 0 && d.proto.to_ascii_uppercase().contains("RTP/"))
}

/// The payload types of `m` that both policies allow, in the first allow list's order of
/// `[receiver, sender]` (else as received); None when neither policy restricts anything.
fn combined(
    sender: &CodecPolicy,
    receiver: &CodecPolicy,
    m: &Media<'_, '_>,
) -> Result<Option<Vec<u8>>, CodecRefusal> {
    let pick = |p: &CodecPolicy| (!p.is_open()).then(|| p.select(m)).transpose();
    let kept = match (pick(sender)?, pick(receiver)?) {
        (None, None) => return Ok(None),
        (Some(k), None) | (None, Some(k)) => k,
        (Some(s), Some(r)) => {
            let (order, other) = if !receiver.allow.is_empty() || sender.allow.is_empty() {
                (r, s)
            } else {
                (s, r)
            };
            order.into_iter().filter(|pt| other.contains(pt)).collect()
        }
    };
    let all = codecs(m);
    let real = kept.iter().any(|pt| {
        all.iter()
            .any(|c| c.payload_type == *pt && !c.is_auxiliary())
    });
    if real {
        Ok(Some(kept))
    } else {
        Err(CodecRefusal::NoCommonCodec)
    }
}

impl CallCodecs {
    /// Whether a body in a response from `callee` answers the SBC's last offer (else it is an
    /// offer of its own: a 2xx to an offer-less INVITE).
    pub(super) fn is_answer_from(&self, callee: Side) -> bool {
        self.awaiting == Some(callee) || (self.awaiting.is_none() && self.answered == Some(callee))
    }

    /// An offer from `from` (parsed): the format edits of the body for the other leg. The
    /// offerer's codecs are remembered for the answer.
    pub(super) fn offer(
        &mut self,
        cfg: &B2buaConfig,
        trunk: Option<usize>,
        from: Side,
        parsed: &Sdp<'_>,
    ) -> Result<Vec<FormatEdit>, NoCommonCodec> {
        let (sender, receiver) = policies(cfg, trunk, from);
        let step = dtmf_step(cfg, trunk, from);
        let wanted_event = media_policy::of(cfg, from.other(), trunk).event_payload_type;
        let mut edits = Vec::with_capacity(parsed.media_count());
        let mut declared = Vec::with_capacity(parsed.media_count());
        for (index, m) in parsed.media().enumerate() {
            if !is_rtp(&m) {
                edits.push(FormatEdit::default());
                declared.push(Vec::new());
                continue;
            }
            let all = codecs(&m);
            let keep = combined(sender, receiver, &m).map_err(|_| NoCommonCodec { index })?;
            // What the offerer declared stays recorded (the relay detects its events); only
            // the body toward an INFO side loses them.
            let mut written = keep.clone();
            let mut add_event = None;
            match step {
                DtmfStep::Keep => {}
                DtmfStep::Strip => written = strip_events(written, &all),
                DtmfStep::Add => {
                    let has = match &keep {
                        Some(k) => all
                            .iter()
                            .any(|c| is_event(c) && k.contains(&c.payload_type)),
                        None => all.iter().any(is_event),
                    };
                    if !has {
                        add_event = free_dynamic(&m, wanted_event);
                    }
                }
            }
            let crossing: Vec<CodecSpec> = match &keep {
                Some(k) => k
                    .iter()
                    .filter_map(|pt| all.iter().find(|c| c.payload_type == *pt))
                    .map(|c| c.to_spec())
                    .collect(),
                None => all.iter().map(|c| c.to_spec()).collect(),
            };
            // The receiving side's own number for telephone-event: its answer comes back in
            // it, `answer` renumbers it to the offerer's and the relay maps the two.
            let renumber = event_renumbering(&m, &all, written.as_deref(), wanted_event);
            edits.push(FormatEdit {
                keep: written.map(|k| k.iter().map(u8::to_string).collect()),
                renumber,
                add_event,
            });
            declared.push(crossing);
        }
        self.declared[idx(from)] = declared;
        self.awaiting = Some(from.other());
        Ok(edits)
    }

    /// The answer from `from` (parsed) to the offer of the other side: filtered like an offer,
    /// renumbered to the offerer's numbers, and the relay's rewrites recomputed.
    pub(super) fn answer(
        &mut self,
        cfg: &B2buaConfig,
        trunk: Option<usize>,
        from: Side,
        parsed: &Sdp<'_>,
    ) -> Result<Vec<FormatEdit>, NoCommonCodec> {
        let offerer = from.other();
        let (sender, receiver) = policies(cfg, trunk, from);
        let step = dtmf_step(cfg, trunk, from);
        let mut edits = Vec::with_capacity(parsed.media_count());
        let mut declared = Vec::with_capacity(parsed.media_count());
        for (index, m) in parsed.media().enumerate() {
            if !is_rtp(&m) {
                edits.push(FormatEdit::default());
                declared.push(Vec::new());
                continue;
            }
            let all = codecs(&m);
            let keep = combined(sender, receiver, &m).map_err(|_| NoCommonCodec { index })?;
            // As for offers: recorded as declared, removed only from the body.
            let written = if step == DtmfStep::Strip {
                strip_events(keep.clone(), &all)
            } else {
                keep.clone()
            };
            let kept: Vec<CodecSpec> = match &keep {
                Some(k) => k
                    .iter()
                    .filter_map(|pt| all.iter().find(|c| c.payload_type == *pt))
                    .map(|c| c.to_spec())
                    .collect(),
                None => all.iter().map(|c| c.to_spec()).collect(),
            };
            let offered = self.declared[idx(offerer)]
                .get(index)
                .map_or(&[][..], Vec::as_slice);
            // The offerer takes RFC 4733 from the SBC: its telephone-event stays in the answer.
            let add_event = (step == DtmfStep::Add
                && !kept.iter().any(|c| is_event(&c.as_codec())))
            .then(|| offered.iter().find(|c| is_event(&c.as_codec())))
            .flatten()
            .map(|c| c.payload_type)
            .filter(|pt| !kept.iter().any(|c| c.payload_type == *pt));
            edits.push(FormatEdit {
                keep: written.map(|k| k.iter().map(u8::to_string).collect()),
                renumber: renumbering(&kept, offered),
                add_event,
            });
            declared.push(kept);
        }
        self.declared[idx(from)] = declared;
        self.awaiting = None;
        self.answered = Some(from);
        self.modes =
            Some([Side::Inside, Side::Outside].map(|s| media_policy::of(cfg, s, trunk).dtmf));
        self.maps = self.mappings();
        self.dtmf = self.terminations();
        Ok(edits)
    }

    /// The rewrites of every stream, from what both sides declared.
    fn mappings(&self) -> Vec<StreamPayloadMaps> {
        let [inside, outside] = &self.declared;
        inside
            .iter()
            .zip(outside)
            .map(|(i, o)| StreamPayloadMaps {
                inside_to_outside: PayloadMap::between_specs(i, o),
                outside_to_inside: PayloadMap::between_specs(o, i),
            })
            .collect()
    }

    /// Per stream, the `telephone-event` of each side that takes RFC 4733 while the other
    /// takes INFO (`dtmf_interwork.rs`): the relay generates and detects events there.
    fn terminations(&self) -> Vec<StreamDtmf> {
        use super::DtmfMode::{Info, Rfc4733};
        let Some(modes) = self.modes else {
            return Vec::new();
        };
        let mode = |side: Side| modes[idx(side)];
        let streams = self.declared[0].len().max(self.declared[1].len());
        (0..streams)
            .map(|i| {
                let mut d = StreamDtmf::default();
                for side in [Side::Inside, Side::Outside] {
                    if mode(side) == Rfc4733 && mode(side.other()) == Info {
                        d.terminated[idx(side)] = self.declared[idx(side)]
                            .get(i)
                            .and_then(|s| s.iter().find(|c| is_event(&c.as_codec())))
                            .map(|c| c.payload_type);
                    }
                }
                d
            })
            .collect()
    }

    /// The legs whose DTMF the relay terminates, per `m=` line (empty before the first
    /// answer).
    pub(super) fn dtmf(&self) -> &[StreamDtmf] {
        &self.dtmf
    }

    /// The `telephone-event/8000` payload type `side` declared, and its stream: where the
    /// relay sends generated events toward that side (None: it negotiated none).
    pub(super) fn event_payload(&self, side: Side) -> Option<(usize, u8)> {
        self.declared[idx(side)]
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                s.iter()
                    .find(|c| is_event(&c.as_codec()))
                    .map(|c| (i, c.payload_type))
            })
    }

    /// The relay's rewrites per `m=` line (empty before the first answer).
    pub(super) fn maps(&self) -> &[StreamPayloadMaps] {
        &self.maps
    }

    /// The DTMF method `side` was negotiated with (None before the first answer).
    pub(super) fn dtmf_mode(&self, side: Side) -> Option<super::DtmfMode> {
        self.modes.map(|m| m[idx(side)])
    }

    /// The persisted form (None before the first answer: nothing negotiated to keep).
    pub(super) fn snapshot(&self) -> Option<CodecsSnapshot> {
        let dtmf = self.modes?;
        let record = |side: &Vec<Vec<CodecSpec>>| -> Vec<Vec<CodecRecord>> {
            side.iter()
                .map(|m| m.iter().map(CodecRecord::of).collect())
                .collect()
        };
        Some(CodecsSnapshot {
            declared: [record(&self.declared[0]), record(&self.declared[1])],
            dtmf,
        })
    }

    /// A restored call's codec state: the rewrites and DTMF terminations recomputed from what
    /// the legs declared (the next offer from either side is negotiated as usual).
    pub(super) fn restored(snap: &CodecsSnapshot) -> Self {
        let spec = |side: &Vec<Vec<CodecRecord>>| -> Vec<Vec<CodecSpec>> {
            side.iter()
                .map(|m| m.iter().map(CodecRecord::spec).collect())
                .collect()
        };
        let mut codecs = Self {
            declared: [spec(&snap.declared[0]), spec(&snap.declared[1])],
            modes: Some(snap.dtmf),
            ..Self::default()
        };
        codecs.maps = codecs.mappings();
        codecs.dtmf = codecs.terminations();
        codecs
    }
}

/// The sender's and the receiver's codec policy for a body from `from`.
fn policies(cfg: &B2buaConfig, trunk: Option<usize>, from: Side) -> (&CodecPolicy, &CodecPolicy) {
    (
        &media_policy::of(cfg, from, trunk).codecs,
        &media_policy::of(cfg, from.other(), trunk).codecs,
    )
}

/// For each answered codec the offer numbered differently, `(answer's, offer's)` — unless the
/// offer's number is taken by another payload type of the answer (an answer that reuses
/// numbers for other codecs keeps its own numbering; the relay maps it either way).
fn renumbering(answer: &[CodecSpec], offer: &[CodecSpec]) -> Vec<(u8, u8)> {
    let mut out: Vec<(u8, u8)> = Vec::new();
    for a in answer {
        let ours = a.as_codec();
        let Some(o) = offer.iter().find(|o| o.as_codec().same_as(&ours)) else {
            continue;
        };
        let target = o.payload_type;
        let taken = answer.iter().any(|x| x.payload_type == target)
            || out.iter().any(|(_, t)| *t == target);
        if target != a.payload_type && !taken {
            out.push((a.payload_type, target));
        }
    }
    out
}

impl super::B2bua {
    /// The payload-type rewrites the relay makes on `session`'s streams, per `m=` line (empty
    /// before the first answer; None for an unknown session).
    pub fn payload_maps(&self, session: crate::media::SessionId) -> Option<&[StreamPayloadMaps]> {
        let call = self.sessions.get(&session)?;
        Some(self.calls.get(call)?.codecs.maps())
    }
}

/// Hands the relay the payload-type rewrites settled by an answer.
pub(super) fn relay_maps(
    now: std::time::Instant,
    codecs: &CallCodecs,
    media: &mut crate::media::MediaTable,
    session: Option<crate::media::SessionId>,
) -> Result<(), super::SdpProblem> {
    let Some(session) = session else {
        return Ok(());
    };
    media
        .set_payload_maps(now, session, codecs.maps())
        .map_err(|_| super::SdpProblem::PayloadMaps)?;
    media
        .set_dtmf(now, session, codecs.dtmf())
        .map_err(|_| super::SdpProblem::PayloadMaps)
}
