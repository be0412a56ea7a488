//! SDP across the B2BUA: what the media layer needs from an offer or answer, and the SDP the
//! other leg gets — every address, port and origin the peer wrote replaced by the SBC's own,
//! and every line the [`SdpPolicy`] does not allow removed. Connection addresses are checked
//! before the relay sees them: the SBC's own, loopback, multicast, broadcast and link-local
//! ones are refused (488), and `0.0.0.0`/`::` is a hold, never a target.

use std::net::IpAddr;

use super::codec_policy::FormatEdit;
use crate::text::Text;
use crate::{
    media::{StreamDesc, StreamRelay},
    net::Side,
    sdp::{self, AddressRefusal, AddressUse, Sdp, SdpEditor, SdpPolicy, Section},
};

/// Why an SDP body could not be used (the call gets 488).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpProblem {
    /// Not parseable SDP.
    #[error("malformed SDP: {0}")]
    Malformed(#[from] sdp::SdpError),
    /// A stream without a usable connection address.
    #[error("media section {0} has no usable connection address")]
    NoAddress(usize),
    /// A stream whose connection address the relay must not send to.
    #[error("media section {index} names {reason}")]
    Address {
        /// The media section.
        index: usize,
        /// What the address is.
        reason: AddressRefusal,
    },
    /// No `m=` line: nothing to anchor, and nothing of the body may cross unrewritten.
    #[error("no media sections")]
    NoMedia,
    /// The codec policy left a section without a real codec (`codec_policy.rs`).
    #[error("media section {0} has no codec in common with the policy")]
    NoCommonCodec(usize),
    /// The relay cannot rewrite the payload types the two legs numbered differently, or
    /// cannot terminate the DTMF the sides convert.
    #[error("the relay cannot map payload types")]
    PayloadMaps,
    /// SRTP negotiation refused the body (`srtp_policy.rs`); the label says why.
    #[error("SRTP: {0}")]
    Srtp(&'static str),
    /// The relay returned endpoints for a different number of streams than the body has.
    #[error("{sections} media sections but {relays} relayed streams")]
    Unanchored {
        /// `m=` lines in the body.
        sections: usize,
        /// Relay endpoints returned by the media layer.
        relays: usize,
    },
}

impl SdpProblem {
    /// Metric label (bounded set).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "sdp_malformed",
            Self::NoAddress(_) => "sdp_no_address",
            Self::Address { reason, .. } => reason.as_str(),
            Self::NoMedia => "sdp_no_media",
            Self::NoCommonCodec(_) => "sdp_no_common_codec",
            Self::PayloadMaps => "sdp_pt_map_relay",
            Self::Srtp(reason) => reason,
            Self::Unanchored { .. } => "sdp_unanchored",
        }
    }
}

/// The direction a stream whose peer wrote `0.0.0.0` effectively has: that peer receives
/// nothing (RFC 3264 §8.4), whatever it sends.
const fn held(d: sdp::Direction) -> sdp::Direction {
    match d {
        sdp::Direction::SendRecv | sdp::Direction::SendOnly => sdp::Direction::SendOnly,
        sdp::Direction::RecvOnly | sdp::Direction::Inactive => sdp::Direction::Inactive,
    }
}

/// Whether media section `m` is an enabled stream at `0.0.0.0`/`::`.
fn is_held(m: &sdp::Media<'_, '_>, policy: &SdpPolicy) -> bool {
    let port = m.desc().map_or(0, |d| d.port);
    port != 0 && connection_ip(m).is_some_and(|a| policy.classify(a) == AddressUse::Hold)
}

fn connection_ip(m: &sdp::Media<'_, '_>) -> Option<IpAddr> {
    match m.effective_connection() {
        Some(Ok(c)) => c.address.split('/').next().unwrap_or("").parse().ok(),
        _ => None,
    }
}

/// The streams of a parsed SDP body, one per `m=` line, in order; refused if an enabled
/// stream's address is one the relay must not send to.
pub(super) fn streams(parsed: &Sdp<'_>, policy: &SdpPolicy) -> Result<Vec<StreamDesc>, SdpProblem> {
    let mut out = Vec::with_capacity(parsed.media_count());
    for (i, m) in parsed.media().enumerate() {
        let desc = m.desc()?;
        let addr = connection_ip(&m).ok_or(SdpProblem::NoAddress(i))?;
        let mut direction = m.effective_direction();
        if desc.port != 0 {
            match policy.classify(addr) {
                AddressUse::Target => {}
                AddressUse::Hold => direction = held(direction),
                AddressUse::Refused(reason) => {
                    return Err(SdpProblem::Address { index: i, reason });
                }
            }
        }
        let rtcp_port = match m.rtcp() {
            Some(Ok(r)) => Some(r.port),
            _ => None,
        };
        out.push(StreamDesc {
            addr,
            rtp_port: desc.port,
            rtcp_port,
            rtcp_mux: m.rtcp_mux(),
            direction,
        });
    }
    Ok(out)
}

/// The `o=` line the SBC writes on one leg (RFC 3264 §5: one session id per endpoint, version
/// incremented whenever the description changes).
#[derive(Debug, Clone, Hash)]
pub(super) struct Origin {
    session_id: u64,
    version: u64,
    /// (session id, version) of the last SDP received from the other leg.
    last_source: Option<(String, u64)>,
}

impl Origin {
    pub(super) fn new(session_id: u64) -> Self {
        Self {
            session_id,
            version: 1,
            last_source: None,
        }
    }

    /// Session id, version and last source, for persistence (`snapshot.rs`).
    pub(super) fn parts(&self) -> (u64, u64, Option<(String, u64)>) {
        (self.session_id, self.version, self.last_source.clone())
    }

    /// The origin of persisted parts (`restore.rs`).
    pub(super) fn from_parts(
        session_id: u64,
        version: u64,
        last_source: Option<(String, u64)>,
    ) -> Self {
        Self {
            session_id,
            version,
            last_source,
        }
    }
}

/// Writes the parsed body for `to` (the leg receiving it) with the relay endpoints facing that
/// leg, keeping only what `policy` allows and the payload types the codec policy's `formats`
/// keep (per `m=` line; missing entries change nothing). Every `m=` line must have its relay
/// endpoints: a body that cannot be anchored completely is refused, never passed on as it
/// came.
pub(super) fn rewrite(
    parsed: &Sdp<'_>,
    relays: &[StreamRelay],
    to: Side,
    origin: &mut Origin,
    policy: &SdpPolicy,
    formats: &[FormatEdit],
    out: &mut Vec<u8>,
) -> Result<(), SdpProblem> {
    let src = parsed.origin()?;
    let sections = parsed.media_count();
    if sections == 0 {
        return Err(SdpProblem::NoMedia);
    }
    if relays.len() != sections {
        return Err(SdpProblem::Unanchored {
            sections,
            relays: relays.len(),
        });
    }
    let source = (src.session_id.to_owned(), src.session_version);
    match &origin.last_source {
        None => {}
        Some(last) if *last == source => {}
        Some(_) => origin.version += 1,
    }
    origin.last_source = Some(source);

    let facing = |r: &StreamRelay| r.facing(to);
    let addr_text = |a: IpAddr| (if a.is_ipv6() { "IP6" } else { "IP4" }, Text::ip(a));
    let (family, addr) = addr_text(facing(&relays[0]).addr);
    let mut ed = SdpEditor::new(parsed);
    ed.apply_policy(policy);
    ed.replace_origin("sbc", origin.session_id, origin.version, family, &addr)?;
    ed.sanitize_session();
    if parsed.connection().is_some() {
        ed.set_connection(Section::Session, family, &addr)?;
    }
    for (m, relay) in parsed.media().zip(relays) {
        let i = m.index;
        let ep = facing(relay);
        let (family, addr) = addr_text(ep.addr);
        if m.connection().is_some() || parsed.connection().is_none() {
            ed.set_connection(Section::Media(i), family, &addr)?;
        }
        ed.set_port(i, ep.rtp_port)?;
        if let Some(edit) = formats.get(i) {
            if let Some(keep) = &edit.keep {
                let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                ed.filter_formats(i, &keep)?;
            }
            if !edit.renumber.is_empty() {
                ed.renumber_formats(i, &edit.renumber)?;
            }
            if let Some(pt) = edit.add_event {
                ed.append_format(i, pt, "telephone-event/8000", Some("0-16"))?;
            }
        }
        match m.rtcp() {
            Some(Ok(r)) => {
                let with_addr = r.connection.is_some().then_some((family, addr.as_str()));
                ed.set_rtcp(i, ep.rtcp_port, with_addr)?;
            }
            // Unreadable: it cannot be rewritten, so it does not cross.
            Some(Err(_)) => {
                ed.remove_rtcp(i)?;
            }
            None => {}
        }
        // RFC 3264 §8.4: a peer at 0.0.0.0 receives nothing. The other leg gets the relay's
        // address, so it is told with the direction instead.
        if is_held(&m, policy) {
            ed.set_direction(Section::Media(i), held(m.effective_direction()))?;
        }
    }
    out.clear();
    ed.write(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::RelayEndpoint;

    const OFFER: &[u8] = b"v=0\r\no=pbx 1234 7 IN IP4 192.168.1.10\r\ns=call\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\na=rtcp:40001 IN IP4 192.168.1.10\r\na=sendrecv\r\n";

    #[test]
    fn streams_read_address_ports_direction() {
        let s = streams(&Sdp::parse(OFFER).expect("parses"), &SdpPolicy::default()).expect("valid");
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].addr,
            "192.168.1.10".parse::<IpAddr>().expect("literal")
        );
        assert_eq!((s[0].rtp_port, s[0].rtcp_port), (40000, Some(40001)));
    }

    #[test]
    fn rewrite_hides_every_inside_value() {
        let ep = |a: &str, p| RelayEndpoint {
            addr: a.parse().expect("literal"),
            rtp_port: p,
            rtcp_port: p + 1,
        };
        let relays = [StreamRelay {
            inside: ep("10.0.0.1", 10000),
            outside: ep("203.0.113.5", 10002),
        }];
        let mut origin = Origin::new(99);
        let mut out = Vec::new();
        rewrite(
            &Sdp::parse(OFFER).expect("parses"),
            &relays,
            Side::Outside,
            &mut origin,
            &SdpPolicy::default(),
            &[],
            &mut out,
        )
        .expect("rewrite");
        let text = String::from_utf8(out.clone()).expect("utf8");
        assert!(
            !text.contains("192.168.1.10") && !text.contains("1234") && !text.contains("pbx"),
            "{text}"
        );
        assert!(text.contains("o=sbc 99 1 IN IP4 203.0.113.5\r\n"), "{text}");
        assert!(text.contains("c=IN IP4 203.0.113.5\r\n"));
        assert!(text.contains("m=audio 10002 RTP/AVP 0 8\r\n"));
        assert!(text.contains("a=rtcp:10003 IN IP4 203.0.113.5\r\n"));
        // Same source version: same origin version; a new source version bumps ours.
        rewrite(
            &Sdp::parse(OFFER).expect("parses"),
            &relays,
            Side::Outside,
            &mut origin,
            &SdpPolicy::default(),
            &[],
            &mut out,
        )
        .expect("rewrite");
        assert!(String::from_utf8_lossy(&out).contains("o=sbc 99 1 "));
        let changed = String::from_utf8_lossy(OFFER).replace("1234 7", "1234 8");
        rewrite(
            &Sdp::parse(changed.as_bytes()).expect("parses"),
            &relays,
            Side::Outside,
            &mut origin,
            &SdpPolicy::default(),
            &[],
            &mut out,
        )
        .expect("rewrite");
        assert!(String::from_utf8_lossy(&out).contains("o=sbc 99 2 "));
    }
}
