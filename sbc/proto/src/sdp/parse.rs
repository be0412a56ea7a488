//! Parsing SDP into lines and decoding the ones an SBC reads.

use std::fmt;

use super::error::SdpError;

/// One `<type>=<value>` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpLine<'a> {
    /// The type letter (`v`, `o`, `c`, `m`, `a`, …); `0` for an empty line.
    pub kind: u8,
    /// The value after `=`, without the line end.
    pub value: &'a [u8],
    /// The whole line including its line end, as received.
    pub raw: &'a [u8],
}

impl<'a> SdpLine<'a> {
    /// The value as text.
    pub fn text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }

    /// For an attribute line, its name and optional value (`a=<name>[:<value>]`).
    pub fn attribute(&self) -> Option<(&'a str, Option<&'a str>)> {
        if self.kind != b'a' {
            return None;
        }
        let t = self.text()?;
        Some(match split_at_byte(t, b':') {
            Some((n, v)) => (n, Some(v)),
            None => (t, None),
        })
    }
}

/// A parsed SDP body.
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    pub(crate) lines: Vec<SdpLine<'a>>,
    /// Index of each `m=` line.
    pub(crate) media_starts: Vec<usize>,
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// username
    pub username: &'a str,
    /// sess-id
    pub session_id: &'a str,
    /// sess-version
    pub session_version: u64,
    /// nettype (`IN`)
    pub nettype: &'a str,
    /// addrtype (`IP4`/`IP6`)
    pub addrtype: &'a str,
    /// unicast-address
    pub address: &'a str,
}

/// `c=<nettype> <addrtype> <connection-address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a> {
    /// nettype (`IN`)
    pub nettype: &'a str,
    /// addrtype (`IP4`/`IP6`)
    pub addrtype: &'a str,
    /// The address (multicast forms keep their `/ttl/count` suffix).
    pub address: &'a str,
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaDesc<'a> {
    /// `audio`, `video`, `image`, …
    pub media: &'a str,
    /// The port (0 = disabled stream, RFC 3264 §8.2).
    pub port: u16,
    /// The number of ports, if given.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, …
    pub proto: &'a str,
    /// The formats, space-separated as received.
    pub formats: &'a str,
}

impl<'a> MediaDesc<'a> {
    /// The formats one by one.
    pub fn format_list(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.formats.split(' ').filter(|f| !f.is_empty())
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp<'a> {
    /// The RTCP port.
    pub port: u16,
    /// The optional address.
    pub connection: Option<Connection<'a>>,
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// The payload type.
    pub payload_type: &'a str,
    /// The encoding, e.g. `PCMU/8000`.
    pub encoding: &'a str,
}

/// Media direction attributes (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv` (the default)
    #[default]
    SendRecv,
    /// `a=sendonly`: the peer puts the call on hold (it sends, e.g. music on hold, but does not
    /// expect media).
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    /// Whether this direction means "on hold" for media-timeout purposes (RFC 3264 §8.4).
    pub const fn is_hold(self) -> bool {
        matches!(self, Self::SendOnly | Self::Inactive)
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn from_attr(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }

    /// The direction the answerer uses for an offer with this direction (RFC 3264 §6.1).
    pub fn reversed(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One media section: its `m=` line and the lines up to the next one.
#[derive(Debug, Clone, Copy)]
pub struct Media<'s, 'a> {
    sdp: &'s Sdp<'a>,
    /// The section number (0-based).
    pub index: usize,
    start: usize,
    end: usize,
}

impl<'a> Sdp<'a> {
    /// Splits a body into lines. Line ends may be CRLF or LF (RFC 8866 §5 asks parsers to
    /// accept both); the first line must be `v=0`.
    pub fn parse(body: &'a [u8]) -> Result<Self, SdpError> {
        let mut lines = Vec::with_capacity(memchr::memchr_iter(b'\n', body).count() + 1);
        let mut media_starts = Vec::new();
        let mut pos = 0;
        while pos < body.len() {
            let end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i + 1);
            let raw = &body[pos..end];
            let content = raw.strip_suffix(b"\n").unwrap_or(raw);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            let n = lines.len();
            let line = if content.is_empty() {
                SdpLine {
                    kind: 0,
                    value: content,
                    raw,
                }
            } else {
                match content {
                    [k, b'=', value @ ..] if k.is_ascii_lowercase() => SdpLine {
                        kind: *k,
                        value,
                        raw,
                    },
                    _ => {
                        return Err(if n == 0 {
                            SdpError::NotSdp
                        } else {
                            SdpError::BadLine { line: n }
                        });
                    }
                }
            };
            if line.kind == b'm' {
                media_starts.push(n);
            }
            lines.push(line);
            pos = end;
        }
        match lines.first() {
            Some(SdpLine {
                kind: b'v',
                value: b"0",
                ..
            }) => Ok(Self {
                lines,
                media_starts,
            }),
            _ => Err(SdpError::NotSdp),
        }
    }

    /// All lines in order.
    pub fn lines(&self) -> &[SdpLine<'a>] {
        &self.lines
    }

    fn session_end(&self) -> usize {
        self.media_starts
            .first()
            .copied()
            .unwrap_or(self.lines.len())
    }

    /// The origin (`o=`).
    pub fn origin(&self) -> Result<Origin<'a>, SdpError> {
        let line = self.lines[..self.session_end()]
            .iter()
            .enumerate()
            .find(|(_, l)| l.kind == b'o')
            .ok_or(SdpError::BadOrigin)?;
        let text = line.1.text().ok_or(SdpError::NotUtf8 { line: line.0 })?;
        let Some([username, session_id, version, nettype, addrtype, address]) = fields(text) else {
            return Err(SdpError::BadOrigin);
        };
        let session_version = version.parse().map_err(|_| SdpError::BadOrigin)?;
        Ok(Origin {
            username,
            session_id,
            session_version,
            nettype,
            addrtype,
            address,
        })
    }

    /// The session-level connection (`c=` before the first `m=`).
    pub fn connection(&self) -> Option<Result<Connection<'a>, SdpError>> {
        self.lines[..self.session_end()]
            .iter()
            .find(|l| l.kind == b'c')
            .map(parse_connection)
    }

    /// Session-level attributes.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + '_ {
        self.lines[..self.session_end()]
            .iter()
            .filter_map(SdpLine::attribute)
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes()
            .find_map(|(n, v)| v.is_none().then(|| Direction::from_attr(n)).flatten())
    }

    /// The media sections.
    pub fn media(&self) -> impl Iterator<Item = Media<'_, 'a>> + '_ {
        (0..self.media_starts.len()).filter_map(|i| self.media_at(i))
    }

    /// The media section `index`.
    pub fn media_at(&self, index: usize) -> Option<Media<'_, 'a>> {
        let start = *self.media_starts.get(index)?;
        let end = self
            .media_starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.lines.len());
        Some(Media {
            sdp: self,
            index,
            start,
            end,
        })
    }

    /// Number of media sections.
    pub fn media_count(&self) -> usize {
        self.media_starts.len()
    }
}

/// `s` split at the first `sep` (ASCII), as `str::split_once` with a char but by a plain
/// byte loop: attribute lines are short, and are split again by every accessor that looks for
/// one, where the generic char searcher cost more than the scan.
fn split_at_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `text` split at every single space into exactly `N` fields (empty ones included, as
/// `str::split` gives them), or None: without collecting into a `Vec` for each line read.
fn fields<const N: usize>(text: &str) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut rest = text;
    for (k, f) in out.iter_mut().enumerate() {
        if k + 1 == N {
            // The last field is the rest, which must hold no further space.
            if rest.bytes().any(|b| b == b' ') {
                return None;
            }
            *f = rest;
        } else {
            let (field, after) = split_at_byte(rest, b' ')?;
            *f = field;
            rest = after;
        }
    }
    Some(out)
}

pub(crate) fn parse_connection<'a>(line: &SdpLine<'a>) -> Result<Connection<'a>, SdpError> {
    let text = line.text().ok_or(SdpError::BadConnection)?;
    let Some([nettype, addrtype, address]) = fields(text) else {
        return Err(SdpError::BadConnection);
    };
    if nettype.is_empty() || addrtype.is_empty() || address.is_empty() {
        return Err(SdpError::BadConnection);
    }
    Ok(Connection {
        nettype,
        addrtype,
        address,
    })
}

impl<'s, 'a> Media<'s, 'a> {
    /// The lines of this section, `m=` first.
    pub fn lines(&self) -> &'s [SdpLine<'a>] {
        &self.sdp.lines[self.start..self.end]
    }

    /// Index of the `m=` line in [`Sdp::lines`].
    pub fn line_index(&self) -> usize {
        self.start
    }

    /// The decoded `m=` line.
    pub fn desc(&self) -> Result<MediaDesc<'a>, SdpError> {
        let text = self.sdp.lines[self.start]
            .text()
            .ok_or(SdpError::BadMedia)?;
        // As `splitn(4, ' ')`: media, port and proto are required, the formats are the rest.
        let (media, rest) = split_at_byte(text, b' ').ok_or(SdpError::BadMedia)?;
        let (port, rest) = split_at_byte(rest, b' ').ok_or(SdpError::BadMedia)?;
        let (proto, formats) = split_at_byte(rest, b' ').unwrap_or((rest, ""));
        let (port, port_count) = match split_at_byte(port, b'/') {
            Some((p, n)) => (p, Some(n.parse().map_err(|_| SdpError::BadMedia)?)),
            None => (port, None),
        };
        let port = port.parse().map_err(|_| SdpError::BadMedia)?;
        if media.is_empty() || proto.is_empty() {
            return Err(SdpError::BadMedia);
        }
        Ok(MediaDesc {
            media,
            port,
            port_count,
            proto,
            formats,
        })
    }

    /// The media-level connection, if this section has one.
    pub fn connection(&self) -> Option<Result<Connection<'a>, SdpError>> {
        self.lines()
            .iter()
            .find(|l| l.kind == b'c')
            .map(parse_connection)
    }

    /// The connection that applies: media-level, else session-level (RFC 8866 §5.7).
    pub fn effective_connection(&self) -> Option<Result<Connection<'a>, SdpError>> {
        self.connection().or_else(|| self.sdp.connection())
    }

    /// The attributes of this section.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 's {
        self.lines().iter().filter_map(SdpLine::attribute)
    }

    /// The first value of attribute `name` (`Some(None)` for a flag attribute).
    pub fn attribute(&self, name: &str) -> Option<Option<&'a str>> {
        self.attributes().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `a=rtcp` (RFC 3605).
    pub fn rtcp(&self) -> Option<Result<Rtcp<'a>, SdpError>> {
        let v = self.attribute("rtcp")?;
        Some((|| {
            let v = v.ok_or(SdpError::BadAttribute("rtcp"))?;
            let (port, rest) = v.split_once(' ').map_or((v, None), |(p, r)| (p, Some(r)));
            let port = port.parse().map_err(|_| SdpError::BadAttribute("rtcp"))?;
            let connection = match rest {
                None => None,
                Some(r) => {
                    let Some([nettype, addrtype, address]) = fields(r) else {
                        return Err(SdpError::BadAttribute("rtcp"));
                    };
                    Some(Connection {
                        nettype,
                        addrtype,
                        address,
                    })
                }
            };
            Ok(Rtcp { port, connection })
        })())
    }

    /// Whether `a=rtcp-mux` is present (RFC 5761).
    pub fn rtcp_mux(&self) -> bool {
        self.attribute("rtcp-mux").is_some()
    }

    /// The media-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes()
            .find_map(|(n, v)| v.is_none().then(|| Direction::from_attr(n)).flatten())
    }

    /// The direction that applies: media-level, else session-level, else sendrecv
    /// (RFC 3264 §5.1).
    pub fn effective_direction(&self) -> Direction {
        self.direction()
            .or_else(|| self.sdp.direction())
            .unwrap_or(Direction::SendRecv)
    }

    /// `a=rtpmap` lines.
    pub fn rtpmaps(&self) -> impl Iterator<Item = RtpMap<'a>> + 's {
        self.attributes()
            .filter(|(n, _)| *n == "rtpmap")
            .filter_map(|(_, v)| {
                let (payload_type, encoding) = v?.split_once(' ')?;
                Some(RtpMap {
                    payload_type,
                    encoding,
                })
            })
    }

    /// The `a=fmtp` parameters for a payload type.
    pub fn fmtp(&self, payload_type: &str) -> Option<&'a str> {
        self.attributes()
            .filter(|(n, _)| *n == "fmtp")
            .find_map(|(_, v)| {
                let (pt, params) = v?.split_once(' ')?;
                (pt == payload_type).then_some(params)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_like_str_split() {
        for text in [
            "a b c", "a  b", " a b", "a b ", "abc", "", "a b c d", "  ", "a/b c d",
        ] {
            let want: Vec<&str> = text.split(' ').collect();
            let three: Option<[&str; 3]> = fields(text);
            assert_eq!(
                three.map(Vec::from),
                (want.len() == 3).then(|| want.clone()),
                "{text:?}"
            );
            let one: Option<[&str; 1]> = fields(text);
            assert_eq!(
                one.map(Vec::from),
                (want.len() == 1).then(|| want.clone()),
                "{text:?}"
            );
        }
    }

    pub(crate) const OFFER: &[u8] = b"v=0\r\n\
o=- 20518 0 IN IP4 192.168.1.10\r\n\
s=-\r\n\
c=IN IP4 192.168.1.10\r\n\
t=0 0\r\n\
a=sendrecv\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtcp:40001 IN IP4 192.168.1.10\r\n\
a=ptime:20\r\n\
m=video 0/2 RTP/AVP 31\r\n\
c=IN IP6 2001:db8::1\r\n\
a=inactive\r\n\
a=rtcp-mux\r\n";

    #[test]
    fn typed_accessors() {
        let sdp = Sdp::parse(OFFER).expect("valid");
        let o = sdp.origin().expect("origin");
        assert_eq!(
            (o.session_id, o.session_version, o.address),
            ("20518", 0, "192.168.1.10")
        );
        assert_eq!(
            sdp.connection().and_then(Result::ok).map(|c| c.address),
            Some("192.168.1.10")
        );
        assert_eq!(sdp.media_count(), 2);
        let audio = sdp.media_at(0).expect("audio");
        let d = audio.desc().expect("m=");
        assert_eq!(
            (d.media, d.port, d.port_count, d.proto),
            ("audio", 40000, None, "RTP/AVP")
        );
        assert_eq!(d.format_list().collect::<Vec<_>>(), ["0", "8", "101"]);
        let rtcp = audio.rtcp().and_then(Result::ok).expect("rtcp");
        assert_eq!(rtcp.port, 40001);
        assert_eq!(rtcp.connection.map(|c| c.address), Some("192.168.1.10"));
        assert_eq!(audio.fmtp("101"), Some("0-16"));
        assert_eq!(audio.rtpmaps().count(), 3);
        assert_eq!(audio.effective_direction(), Direction::SendRecv);
        assert_eq!(
            audio
                .effective_connection()
                .and_then(Result::ok)
                .map(|c| c.addrtype),
            Some("IP4")
        );
        let video = sdp.media_at(1).expect("video");
        let d = video.desc().expect("m=");
        assert_eq!((d.port, d.port_count), (0, Some(2)));
        assert_eq!(video.direction(), Some(Direction::Inactive));
        assert!(video.rtcp_mux());
        assert_eq!(
            video.connection().and_then(Result::ok).map(|c| c.address),
            Some("2001:db8::1")
        );
    }

    #[test]
    fn errors_and_lf_only() {
        assert_eq!(Sdp::parse(b"").err(), Some(SdpError::NotSdp));
        assert_eq!(Sdp::parse(b"hello").err(), Some(SdpError::NotSdp));
        assert_eq!(
            Sdp::parse(b"v=0\r\nbogus\r\n").err(),
            Some(SdpError::BadLine { line: 1 })
        );
        let lf = Sdp::parse(b"v=0\no=a 1 2 IN IP4 h\nm=audio x RTP/AVP 0\n").expect("lines");
        assert_eq!(lf.origin().map(|o| o.session_version), Ok(2));
        assert_eq!(
            lf.media_at(0).map(|m| m.desc().err()),
            Some(Some(SdpError::BadMedia))
        );
    }
}
