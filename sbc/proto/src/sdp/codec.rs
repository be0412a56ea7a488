//! Codec policy and payload-type mapping for one media section (RFC 3264 §5.1, §6.1; static
//! payload types of RFC 3551 §6).
//!
//! A trunk or the PBX side names the codecs it takes, in its order of preference
//! (`codecs = ["PCMA", "PCMU", "telephone-event"]`), or the ones it refuses (`codecs_deny`).
//! [`CodecPolicy::select`] turns one `m=` section into the payload types to keep, in order;
//! [`SdpEditor::filter_formats`](super::SdpEditor::filter_formats) applies that. A section
//! left with no real codec — only `telephone-event`, comfort noise or redundancy — is refused
//! (the B2BUA answers 488), never forwarded as an empty `m=` line.
//!
//! Payload-type numbers are chosen by each side for what it receives (RFC 3264 §5.1), and an
//! answerer may number a dynamic codec differently from the offer (§6.1 only recommends the
//! same number). The relay then rewrites the RTP header's payload type of what it forwards:
//! [`PayloadMap::between`] finds, for each codec both descriptions share, the number the
//! receiving side expects.

use std::borrow::Cow;

use super::parse::Media;

/// Encodings that carry no audio or video of their own: a section with only these left has
/// no common codec.
const AUXILIARY: &[&str] = &["telephone-event", "cn", "red", "ulpfec", "rtx"];

/// The encoding of a static payload type (RFC 3551 §6, Tables 4 and 5), with its clock rate.
fn static_encoding(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 | 11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        14 => ("MPA", 90000),
        15 => ("G728", 8000),
        16 => ("DVI4", 11025),
        17 => ("DVI4", 22050),
        18 => ("G729", 8000),
        25 => ("CelB", 90000),
        26 => ("JPEG", 90000),
        28 => ("nv", 90000),
        31 => ("H261", 90000),
        32 => ("MPV", 90000),
        33 => ("MP2T", 90000),
        34 => ("H263", 90000),
        _ => return None,
    })
}

/// What one payload type of a section carries: encoding name, clock rate and the optional
/// encoding parameters (channels for audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec<'a> {
    /// The payload type number as it appears on the `m=` line.
    pub payload_type: u8,
    /// The encoding name (`PCMA`, `opus`, `telephone-event`), as written.
    pub name: &'a str,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Encoding parameters (`2` for stereo opus), if given.
    pub params: Option<&'a str>,
}

impl Codec<'_> {
    /// Whether two descriptions name the same codec: name without regard to case (RFC 4855
    /// §3), the same clock rate, and the same channel count (absent counts as 1).
    pub fn same_as(&self, other: &Codec<'_>) -> bool {
        self.name.eq_ignore_ascii_case(other.name)
            && self.clock_rate == other.clock_rate
            && self.params.unwrap_or("1") == other.params.unwrap_or("1")
    }

    /// Whether it carries no audio or video of its own (DTMF events, comfort noise,
    /// redundancy, FEC, retransmission).
    pub fn is_auxiliary(&self) -> bool {
        AUXILIARY.iter().any(|a| self.name.eq_ignore_ascii_case(a))
    }

    /// An owned copy, kept past the SDP body it was read from (a call's negotiated codecs).
    pub fn to_spec(&self) -> CodecSpec {
        // The common names need no allocation per call.
        let name = COMMON_NAMES
            .iter()
            .find(|n| **n == self.name)
            .map_or_else(|| Cow::Owned(self.name.to_owned()), |n| Cow::Borrowed(*n));
        CodecSpec {
            payload_type: self.payload_type,
            name,
            clock_rate: self.clock_rate,
            params: self.params.map(str::to_owned),
        }
    }
}

/// An owned [`Codec`]: what one side declared for one payload type, remembered between its
/// offer and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecSpec {
    /// The payload type number.
    pub payload_type: u8,
    /// The encoding name.
    pub name: Cow<'static, str>,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Encoding parameters, if given.
    pub params: Option<String>,
}

/// Encoding names kept without an allocation in a [`CodecSpec`] (as commonly written).
const COMMON_NAMES: &[&str] = &[
    "PCMU",
    "PCMA",
    "G722",
    "G729",
    "GSM",
    "CN",
    "telephone-event",
    "opus",
    "iLBC",
    "AMR",
    "AMR-WB",
    "red",
];

impl CodecSpec {
    /// The borrowed view.
    pub fn as_codec(&self) -> Codec<'_> {
        Codec {
            payload_type: self.payload_type,
            name: &self.name,
            clock_rate: self.clock_rate,
            params: self.params.as_deref(),
        }
    }
}

/// The codecs of an RTP section, in `m=` line order. Formats that are not a payload type
/// number, and dynamic ones without `a=rtpmap`, are left out (they cannot be named by a
/// policy or mapped).
pub fn codecs<'a>(media: &Media<'_, 'a>) -> Vec<Codec<'a>> {
    let Ok(desc) = media.desc() else {
        return Vec::new();
    };
    // A section has a handful of formats: a scan of its rtpmaps per format costs less than
    // collecting them (this runs on every offer and answer).
    desc.format_list()
        .filter_map(|f| {
            let payload_type = f.parse::<u8>().ok().filter(|pt| *pt < 128)?;
            if let Some(map) = media.rtpmaps().find(|m| m.payload_type == f) {
                let mut parts = map.encoding.split('/');
                let name = parts.next().filter(|n| !n.is_empty())?;
                let clock_rate = parts.next()?.trim().parse().ok()?;
                let params = parts.next().map(str::trim);
                return Some(Codec {
                    payload_type,
                    name,
                    clock_rate,
                    params,
                });
            }
            let (name, clock_rate) = static_encoding(payload_type)?;
            Some(Codec {
                payload_type,
                name,
                clock_rate,
                params: None,
            })
        })
        .collect()
}

/// Which codecs a side takes, and in what order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodecPolicy {
    /// Allowed encoding names in order of preference; empty = every codec, in the order
    /// received.
    pub allow: Vec<String>,
    /// Refused encoding names (used when `allow` is empty).
    pub deny: Vec<String>,
}

/// Why a section was refused by the codec policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecRefusal {
    /// Nothing but auxiliary payloads (DTMF, comfort noise, redundancy) would be left.
    #[error("no codec in common with the policy")]
    NoCommonCodec,
}

impl CodecPolicy {
    /// Whether the policy changes anything at all.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// The payload types of `media` to keep: with an allow list, the payload types of each
    /// named encoding in the list's order (several of one name keep the received order); with
    /// a deny list, all others in the received order. Formats that name no known codec are
    /// not returned, so callers leave a section alone when the policy [`is_open`](Self::is_open).
    pub fn select(&self, media: &Media<'_, '_>) -> Result<Vec<u8>, CodecRefusal> {
        let codecs = codecs(media);
        let kept: Vec<Codec<'_>> = if !self.allow.is_empty() {
            let mut kept = Vec::with_capacity(codecs.len());
            for name in &self.allow {
                kept.extend(
                    codecs
                        .iter()
                        .filter(|c| c.name.eq_ignore_ascii_case(name))
                        .copied(),
                );
            }
            kept
        } else {
            codecs
                .iter()
                .filter(|c| !self.deny.iter().any(|d| c.name.eq_ignore_ascii_case(d)))
                .copied()
                .collect()
        };
        if !kept.iter().any(|c| !c.is_auxiliary()) {
            return Err(CodecRefusal::NoCommonCodec);
        }
        Ok(kept.iter().map(|c| c.payload_type).collect())
    }
}

/// Payload-type rewrites for one direction of one stream: packets whose payload type is
/// `from` leave the relay with `to`. At most one entry per payload type; small, so a linear
/// scan (and a fixed-size copy into an XDP map entry) is enough.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadMap {
    entries: Vec<(u8, u8)>,
    /// The sender's number for RFC 2198 redundancy (`red`) when both sides declare it: the
    /// block headers inside such a packet name payload types too (RFC 2198 §3).
    red: Option<u8>,
}

impl PayloadMap {
    /// For RTP sent by the side that described its reception in `sender` (its offer or
    /// answer) to the side that described its reception in `receiver`: each codec both name
    /// is rewritten from the sender's number to the receiver's, where they differ. A sender
    /// transmits with the numbers its peer — here the SBC, which mirrors the sender's own
    /// numbering back to it — declared, so the sender's description gives the numbers that
    /// arrive.
    pub fn between(sender: &Media<'_, '_>, receiver: &Media<'_, '_>) -> Self {
        Self::between_codecs(&codecs(sender), &codecs(receiver))
    }

    /// [`between`](Self::between) over codec lists already read.
    pub fn between_codecs(sender: &[Codec<'_>], theirs: &[Codec<'_>]) -> Self {
        Self::build(sender.iter().copied(), || theirs.iter().copied())
    }

    /// [`between`](Self::between) over remembered [`CodecSpec`]s (no copy of the lists).
    pub fn between_specs(sender: &[CodecSpec], theirs: &[CodecSpec]) -> Self {
        Self::build(sender.iter().map(CodecSpec::as_codec), || {
            theirs.iter().map(CodecSpec::as_codec)
        })
    }

    fn build<'s, 'r, I>(sender: impl Iterator<Item = Codec<'s>>, theirs: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = Codec<'r>>,
    {
        let mut entries: Vec<(u8, u8)> = Vec::new();
        let mut red = None;
        for ours in sender {
            if red.is_none()
                && ours.name.eq_ignore_ascii_case("red")
                && theirs().any(|t| t.same_as(&ours))
            {
                red = Some(ours.payload_type);
            }
            // The receiver's own number for this codec, preferring the sender's number when
            // the receiver lists the codec under it too (a codec may appear twice).
            let same = || theirs().filter(|t| t.same_as(&ours));
            let target = same()
                .find(|t| t.payload_type == ours.payload_type)
                .or_else(|| same().next());
            if let Some(t) = target
                && t.payload_type != ours.payload_type
                && !entries.iter().any(|(f, _)| *f == ours.payload_type)
            {
                entries.push((ours.payload_type, t.payload_type));
            }
        }
        // Without a number to change, the blocks inside keep theirs as well.
        if entries.is_empty() {
            red = None;
        }
        Self { entries, red }
    }

    /// The payload type a packet with `pt` leaves with.
    pub fn map(&self, pt: u8) -> u8 {
        self.entries
            .iter()
            .find(|(f, _)| *f == pt)
            .map_or(pt, |(_, t)| *t)
    }

    /// Whether no payload type changes (the stream may stay on a path without rewriting).
    pub fn is_identity(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `(from, to)` pairs.
    pub fn entries(&self) -> &[(u8, u8)] {
        &self.entries
    }

    /// The payload type (as sent) whose packets are RFC 2198 redundancy, if both sides
    /// declared `red`.
    pub fn red(&self) -> Option<u8> {
        self.red
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Sdp, SdpEditor};

    const OFFER: &[u8] = b"v=0\r\n\
o=- 1 1 IN IP4 192.0.2.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 9 0 8 18 101 13\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=fmtp:18 annexb=no\r\n\
a=ptime:20\r\n";

    fn policy(allow: &[&str], deny: &[&str]) -> CodecPolicy {
        CodecPolicy {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            deny: deny.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn static_and_dynamic_codecs_are_named() {
        let sdp = Sdp::parse(OFFER).expect("valid SDP");
        let m = sdp.media_at(0).expect("one section");
        let names: Vec<_> = codecs(&m).iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            ["G722", "PCMU", "PCMA", "G729", "telephone-event", "CN"]
        );
    }

    #[test]
    fn allow_list_filters_and_reorders_and_the_editor_writes_it() {
        let sdp = Sdp::parse(OFFER).expect("valid SDP");
        let m = sdp.media_at(0).expect("one section");
        let p = policy(&["pcma", "PCMU", "telephone-event"], &[]);
        let kept = p.select(&m).expect("codecs left");
        assert_eq!(kept, [8, 0, 101]);
        let keep: Vec<String> = kept.iter().map(u8::to_string).collect();
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        SdpEditor::new(&sdp)
            .filter_formats(0, &keep)
            .expect("section 0")
            .write(&mut out);
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(text.contains("m=audio 4000 RTP/AVP 8 0 101\r\n"), "{text}");
        assert!(!text.contains("G722"), "{text}");
        assert!(
            !text.contains("annexb"),
            "G.729's fmtp goes with it: {text}"
        );
        assert!(text.contains("a=fmtp:101 0-16"), "{text}");
        assert!(text.contains("a=ptime:20"), "{text}");
    }

    #[test]
    fn deny_list_keeps_the_received_order() {
        let sdp = Sdp::parse(OFFER).expect("valid SDP");
        let m = sdp.media_at(0).expect("one section");
        assert_eq!(
            policy(&[], &["G722", "g729"])
                .select(&m)
                .expect("codecs left"),
            [0, 8, 101, 13]
        );
        assert_eq!(
            CodecPolicy::default()
                .select(&m)
                .expect("codecs left")
                .len(),
            6
        );
    }

    #[test]
    fn only_auxiliary_payloads_left_is_a_refusal() {
        let sdp = Sdp::parse(OFFER).expect("valid SDP");
        let m = sdp.media_at(0).expect("one section");
        assert_eq!(
            policy(&["opus", "telephone-event", "CN"], &[]).select(&m),
            Err(CodecRefusal::NoCommonCodec)
        );
        assert_eq!(
            policy(&[], &["G722", "PCMU", "PCMA", "G729"]).select(&m),
            Err(CodecRefusal::NoCommonCodec)
        );
    }

    #[test]
    fn payload_map_rewrites_only_what_differs() {
        let answer = b"v=0\r\n\
o=- 2 1 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
m=audio 5000 RTP/AVP 8 96\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:96 TELEPHONE-EVENT/8000\r\n";
        let offer = Sdp::parse(OFFER).expect("valid SDP");
        let answer = Sdp::parse(answer).expect("valid SDP");
        let (o, a) = (
            offer.media_at(0).expect("one section"),
            answer.media_at(0).expect("one section"),
        );
        let map = PayloadMap::between(&o, &a);
        assert_eq!(map.entries(), &[(101, 96)]);
        assert_eq!(map.map(101), 96);
        assert_eq!(map.map(8), 8);
        assert!(!map.is_identity());
        let back = PayloadMap::between(&a, &o);
        assert_eq!(back.map(96), 101);
        assert!(PayloadMap::between(&o, &o).is_identity());
    }

    #[test]
    fn different_clock_rates_or_channels_are_different_codecs() {
        let a = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 96 97\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 telephone-event/48000\r\n";
        let b = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (a, b) = (
            Sdp::parse(a).expect("valid SDP"),
            Sdp::parse(b).expect("valid SDP"),
        );
        let map = PayloadMap::between(
            &a.media_at(0).expect("one section"),
            &b.media_at(0).expect("one section"),
        );
        assert!(map.is_identity(), "{map:?}");
    }

    #[test]
    fn garbage_formats_are_skipped_not_panicked_on() {
        let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 300 x 96 0\r\na=rtpmap:96 /\r\na=rtpmap:0 PCMU/abc\r\n";
        let sdp = Sdp::parse(body).expect("valid SDP");
        let m = sdp.media_at(0).expect("one section");
        assert!(codecs(&m).is_empty());
        assert_eq!(
            policy(&["PCMU"], &[]).select(&m),
            Err(CodecRefusal::NoCommonCodec)
        );
    }
}
