//! What of an SDP body may cross the border, and which connection addresses the relay may be
//! pointed at. Both are allowlists: anything not named here is removed or refused, so a new
//! attribute or address form fails closed.
//!
//! Lines (RFC 8866 §5), in a body forwarded to the other leg:
//! - kept: `v=`, `o=` and `s=` (both rewritten by the B2BUA), `t=`, `r=`, `z=` (timing, no
//!   topology), the first `c=` of each section (rewritten), `m=` (port rewritten), `b=` with a
//!   bandwidth type of [`BANDWIDTH_TYPES`] and a numeric value, and `a=` named in
//!   [`SESSION_ATTRIBUTES`] (session level) or [`MEDIA_ATTRIBUTES`] (media level);
//! - removed: `i=`, `u=`, `e=`, `p=` (free text, URIs, e-mail addresses and phone numbers of
//!   the other side), `k=` (keys; obsolete, RFC 8866 §5.12), `b=` of other types, any line
//!   type RFC 8866 does not define, a second `c=` in a section, a second `a=rtcp` in a media
//!   section, and every other attribute — `a=candidate` (inside addresses), `a=tool` (the
//!   vendor and version), vendor `a=X-…`, ICE, DTLS, `a=ssrc` (its `cname` is often
//!   `user@host`), `a=mid`/`a=group` (BUNDLE cannot be relayed port by port), `a=label`,
//!   `a=extmap`, `a=T38VendorInfo` — and `a=crypto` unless [`SdpPolicy::allow_crypto`].
//!
//! Attribute names are compared without regard to case: T.38 gateways disagree on the case of
//! `T38FaxVersion` and friends, and matching an allowlist loosely lets nothing extra through.

use std::net::IpAddr;

use super::parse::SdpLine;

/// Session-level attributes that cross: the direction only.
pub const SESSION_ATTRIBUTES: &[&str] = &["sendrecv", "sendonly", "recvonly", "inactive"];

/// Media-level attributes that cross (besides `a=crypto` under [`SdpPolicy::allow_crypto`]).
pub const MEDIA_ATTRIBUTES: &[&str] = &[
    // RFC 8866 §6: codecs, packetisation, direction, frame rate.
    "rtpmap",
    "fmtp",
    "ptime",
    "maxptime",
    "framerate",
    "sendrecv",
    "sendonly",
    "recvonly",
    "inactive",
    // RFC 3605 (rewritten to the relay's port), RFC 5761, RFC 4585 (video feedback).
    "rtcp",
    "rtcp-mux",
    "rtcp-fb",
    // RFC 3108 §5.6.3.2 silence suppression (G.711 Annex II, comfort noise).
    "silencesupp",
    // T.38 over UDPTL (ITU-T T.38 Annex D, RFC 3362).
    "t38faxversion",
    "t38maxbitrate",
    "t38faxratemanagement",
    "t38faxmaxbuffer",
    "t38faxmaxdatagram",
    "t38faxudpec",
    "t38faxudpecdepth",
    "t38faxudpfecmaxspan",
    "t38faxfillbitremoval",
    "t38faxtranscodingmmr",
    "t38faxtranscodingjbig",
];

/// `b=` bandwidth types that cross (RFC 8866 §5.8, RFC 3890, RFC 3556): numbers only, and
/// useful to the far end for video and RTCP rates.
pub const BANDWIDTH_TYPES: &[&str] = &["AS", "CT", "TIAS", "RR", "RS"];

/// What the SBC lets through SDP, and which addresses are its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpPolicy {
    /// Keep `a=crypto` (RFC 4568 SDES keys). Off: the SBC has no SRTP yet, and an SRTP offer
    /// without keys is answered (or refused) by the far end as a plain offer would be. This
    /// is the hook for SRTP support; it is not a configuration key.
    pub allow_crypto: bool,
    /// The SBC's own addresses (SIP listeners, advertised and media addresses). An SDP naming
    /// one would make the relay send to itself (a relay loop) and is refused.
    pub own_addresses: Vec<IpAddr>,
}

/// Where in the body a line sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Before the first `m=`.
    Session,
    /// In a media section.
    Media,
}

impl SdpPolicy {
    /// Whether `line` may cross at `level` (for `c=` and `a=rtcp`, only the first of a section:
    /// the caller drops the others).
    pub fn allows(&self, line: &SdpLine<'_>, level: Level) -> bool {
        match line.kind {
            // An empty line (a trailing line end) carries nothing.
            0 | b'v' | b'o' | b's' | b't' | b'r' | b'z' | b'c' | b'm' => true,
            b'b' => line.text().is_some_and(bandwidth_allowed),
            b'a' => line
                .attribute()
                .is_some_and(|(name, _)| self.attribute_allowed(name, level)),
            _ => false,
        }
    }

    /// Whether attribute `name` may cross at `level`.
    pub fn attribute_allowed(&self, name: &str, level: Level) -> bool {
        let name = name.to_ascii_lowercase();
        if name == "crypto" {
            return self.allow_crypto && level == Level::Media;
        }
        let list = match level {
            Level::Session => SESSION_ATTRIBUTES,
            Level::Media => MEDIA_ATTRIBUTES,
        };
        list.contains(&name.as_str())
    }

    /// What the relay may do with connection address `addr` of a stream with a port.
    pub fn classify(&self, addr: IpAddr) -> AddressUse {
        let addr = addr.to_canonical();
        if addr.is_unspecified() {
            return AddressUse::Hold;
        }
        let refusal = if self.own_addresses.iter().any(|a| a.to_canonical() == addr) {
            AddressRefusal::OwnAddress
        } else if addr.is_loopback() {
            AddressRefusal::Loopback
        } else if addr.is_multicast() {
            AddressRefusal::Multicast
        } else if is_broadcast(addr) {
            AddressRefusal::Broadcast
        } else if is_link_local(addr) {
            AddressRefusal::LinkLocal
        } else {
            return AddressUse::Target;
        };
        AddressUse::Refused(refusal)
    }
}

/// The verdict on a stream's connection address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressUse {
    /// A unicast address the relay may send to.
    Target,
    /// `0.0.0.0` or `::`: the peer does not want media (RFC 3264 §8.4, the old hold form).
    /// Never sent to (the kernel would deliver it to the SBC host itself); forwarded as hold.
    Hold,
    /// Refused: the offer or answer gets 488.
    Refused(AddressRefusal),
}

/// Why a connection address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    /// One of the SBC's own addresses: the relay would send to itself.
    #[error("the SBC's own address")]
    OwnAddress,
    /// 127.0.0.0/8 or ::1: the relay would send to the SBC host.
    #[error("a loopback address")]
    Loopback,
    /// Multicast: not a peer, and a relay amplifier.
    #[error("a multicast address")]
    Multicast,
    /// 255.255.255.255.
    #[error("the broadcast address")]
    Broadcast,
    /// 169.254.0.0/16 or fe80::/10: meaningless beyond the peer's own link.
    #[error("a link-local address")]
    LinkLocal,
}

impl AddressRefusal {
    /// Metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OwnAddress => "sdp_own_address",
            Self::Loopback => "sdp_loopback",
            Self::Multicast => "sdp_multicast",
            Self::Broadcast => "sdp_broadcast",
            Self::LinkLocal => "sdp_link_local",
        }
    }
}

fn bandwidth_allowed(value: &str) -> bool {
    value.split_once(':').is_some_and(|(t, v)| {
        BANDWIDTH_TYPES.iter().any(|b| b.eq_ignore_ascii_case(t))
            && !v.is_empty()
            && v.bytes().all(|c| c.is_ascii_digit())
    })
}

fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_broadcast())
}

fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        // fe80::/10 (RFC 4291 §2.5.6).
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Sdp;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn addresses_are_classified() {
        let p = SdpPolicy {
            own_addresses: vec![ip("203.0.113.1"), ip("10.0.0.1")],
            ..SdpPolicy::default()
        };
        let refused = |s: &str| match p.classify(ip(s)) {
            AddressUse::Refused(r) => Some(r),
            _ => None,
        };
        assert_eq!(p.classify(ip("192.0.2.10")), AddressUse::Target);
        assert_eq!(p.classify(ip("2001:db8::7")), AddressUse::Target);
        assert_eq!(p.classify(ip("0.0.0.0")), AddressUse::Hold);
        assert_eq!(p.classify(ip("::")), AddressUse::Hold);
        assert_eq!(refused("203.0.113.1"), Some(AddressRefusal::OwnAddress));
        assert_eq!(refused("::ffff:10.0.0.1"), Some(AddressRefusal::OwnAddress));
        assert_eq!(refused("127.0.0.1"), Some(AddressRefusal::Loopback));
        assert_eq!(refused("127.8.9.10"), Some(AddressRefusal::Loopback));
        assert_eq!(refused("::1"), Some(AddressRefusal::Loopback));
        assert_eq!(refused("::ffff:127.0.0.1"), Some(AddressRefusal::Loopback));
        assert_eq!(refused("224.0.0.1"), Some(AddressRefusal::Multicast));
        assert_eq!(refused("ff02::1"), Some(AddressRefusal::Multicast));
        assert_eq!(refused("255.255.255.255"), Some(AddressRefusal::Broadcast));
        assert_eq!(refused("169.254.1.1"), Some(AddressRefusal::LinkLocal));
        assert_eq!(refused("fe80::1"), Some(AddressRefusal::LinkLocal));
    }

    #[test]
    fn lines_follow_the_allowlist() {
        let body = b"v=0\r\no=- 1 1 IN IP4 h\r\ns=x\r\ni=info\r\nu=http://pbx.lan/\r\n\
e=ops@pbx.lan\r\np=+15551234\r\nk=clear:secret\r\nb=AS:64\r\nb=X-YZ:1\r\nb=TIAS:abc\r\n\
t=0 0\r\na=tool:PBX-Model-9\r\na=sendonly\r\na=X-vendor:1\r\n\
m=audio 4000 RTP/AVP 0\r\ni=media\r\nk=prompt\r\na=candidate:1 1 UDP 1 10.0.0.10 4000 typ host\r\n\
a=rtpmap:0 PCMU/8000\r\na=T38FaxVersion:0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n\
a=mid:audio\r\na=ssrc:1 cname:u@pbx.lan\r\nx=unknown\r\n";
        let sdp = Sdp::parse(body).expect("valid");
        let first_media = 15;
        let kept = |p: &SdpPolicy| -> Vec<&str> {
            sdp.lines()
                .iter()
                .enumerate()
                .filter(|(i, l)| {
                    let level = if *i < first_media {
                        Level::Session
                    } else {
                        Level::Media
                    };
                    p.allows(l, level)
                })
                .filter_map(|(_, l)| l.text())
                .collect()
        };
        assert_eq!(sdp.lines()[first_media].kind, b'm');
        let p = SdpPolicy::default();
        assert_eq!(
            kept(&p),
            [
                "0",
                "- 1 1 IN IP4 h",
                "x",
                "AS:64",
                "0 0",
                "sendonly",
                "audio 4000 RTP/AVP 0",
                "rtpmap:0 PCMU/8000",
                "T38FaxVersion:0",
            ]
        );
        let srtp = SdpPolicy {
            allow_crypto: true,
            ..SdpPolicy::default()
        };
        assert!(kept(&srtp).iter().any(|l| l.starts_with("crypto:")));
        assert!(!srtp.attribute_allowed("crypto", Level::Session));
    }
}
