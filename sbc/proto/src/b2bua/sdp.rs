//! SDP across the B2BUA: what the media layer needs from an offer or answer, and the SDP the
//! other leg gets — every address, port and origin the peer wrote replaced by the SBC's own.

use std::net::IpAddr;

use crate::{
    media::{Direction, Leg, StreamDesc, StreamRelay},
    net::Side,
    sdp::{self, Sdp, SdpEditor, Section},
};

/// The media layer's leg for a signaling side.
pub(super) const fn leg(side: Side) -> Leg {
    match side {
        Side::Inside => Leg::Inside,
        Side::Outside => Leg::Outside,
    }
}

/// Why an SDP body could not be used (the call gets 488).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpProblem {
    /// Not parseable SDP.
    #[error("malformed SDP: {0}")]
    Malformed(#[from] sdp::SdpError),
    /// A stream without a usable connection address.
    #[error("media section {0} has no usable connection address")]
    NoAddress(usize),
}

/// The streams of an SDP body, one per `m=` line, in order.
pub(super) fn streams(body: &[u8]) -> Result<Vec<StreamDesc>, SdpProblem> {
    let parsed = Sdp::parse(body)?;
    let mut out = Vec::with_capacity(parsed.media_count());
    for (i, m) in parsed.media().enumerate() {
        let desc = m.desc()?;
        let addr: IpAddr = match m.effective_connection() {
            Some(Ok(c)) => c.address.split('/').next().unwrap_or("").parse().ok(),
            _ => None,
        }
        .ok_or(SdpProblem::NoAddress(i))?;
        let rtcp_port = match m.rtcp() {
            Some(Ok(r)) => Some(r.port),
            _ => None,
        };
        out.push(StreamDesc {
            addr,
            rtp_port: desc.port,
            rtcp_port,
            rtcp_mux: m.rtcp_mux(),
            direction: match m.effective_direction() {
                sdp::Direction::SendRecv => Direction::SendRecv,
                sdp::Direction::SendOnly => Direction::SendOnly,
                sdp::Direction::RecvOnly => Direction::RecvOnly,
                sdp::Direction::Inactive => Direction::Inactive,
            },
        });
    }
    Ok(out)
}

/// The `o=` line the SBC writes on one leg (RFC 3264 §5: one session id per endpoint, version
/// incremented whenever the description changes).
#[derive(Debug, Clone)]
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
}

/// Writes `body` for `to` (the leg receiving it) with the relay endpoints facing that leg.
pub(super) fn rewrite(
    body: &[u8],
    relays: &[StreamRelay],
    to: Side,
    origin: &mut Origin,
    out: &mut Vec<u8>,
) -> Result<(), SdpProblem> {
    let parsed = Sdp::parse(body)?;
    let src = parsed.origin()?;
    let source = (src.session_id.to_owned(), src.session_version);
    match &origin.last_source {
        None => {}
        Some(last) if *last == source => {}
        Some(_) => origin.version += 1,
    }
    origin.last_source = Some(source);

    let Some(first) = relays.first() else {
        out.clear();
        out.extend_from_slice(body);
        return Ok(());
    };
    let facing = |r: &StreamRelay| r.facing(leg(to));
    let addr_text = |a: IpAddr| (if a.is_ipv6() { "IP6" } else { "IP4" }, a.to_string());
    let (family, addr) = addr_text(facing(first).addr);
    let mut ed = SdpEditor::new(&parsed);
    ed.replace_origin("sbc", origin.session_id, origin.version, family, &addr)?;
    ed.sanitize_session();
    if parsed.connection().is_some() {
        ed.set_connection(Section::Session, family, &addr)?;
    }
    for (i, m) in parsed.media().enumerate() {
        let Some(relay) = relays.get(i) else { break };
        let ep = facing(relay);
        let (family, addr) = addr_text(ep.addr);
        if m.connection().is_some() || parsed.connection().is_none() {
            ed.set_connection(Section::Media(i), family, &addr)?;
        }
        ed.set_port(i, ep.rtp_port)?;
        if let Some(Ok(r)) = m.rtcp() {
            let with_addr = r.connection.is_some().then_some((family, addr.as_str()));
            ed.set_rtcp(i, ep.rtcp_port, with_addr)?;
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
        let s = streams(OFFER).expect("valid");
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
        rewrite(OFFER, &relays, Side::Outside, &mut origin, &mut out).expect("rewrite");
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
        rewrite(OFFER, &relays, Side::Outside, &mut origin, &mut out).expect("rewrite");
        assert!(String::from_utf8_lossy(&out).contains("o=sbc 99 1 "));
        let changed = String::from_utf8_lossy(OFFER).replace("1234 7", "1234 8");
        rewrite(
            changed.as_bytes(),
            &relays,
            Side::Outside,
            &mut origin,
            &mut out,
        )
        .expect("rewrite");
        assert!(String::from_utf8_lossy(&out).contains("o=sbc 99 2 "));
    }
}
