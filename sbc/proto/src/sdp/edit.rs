//! Rewriting SDP for the other leg: addresses, ports, RTCP, direction and payload types.

use super::error::SdpError;
use super::parse::{Direction, Sdp};
use super::policy::{Level, SdpPolicy};
use crate::text::{Text, concat};

/// Which part of the SDP an edit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The session level (before the first `m=`).
    Session,
    /// Media section `n` (0-based).
    Media(usize),
}

#[derive(Debug, Clone, Default)]
struct MediaEdit {
    port: Option<u16>,
    proto: Option<String>,
    formats: Option<Vec<String>>,
}

/// Records edits to a parsed SDP and prints the result; untouched lines are copied verbatim.
#[derive(Debug, Clone)]
pub struct SdpEditor<'s, 'a> {
    sdp: &'s Sdp<'a>,
    /// Replacement text per line (`Some(None)` drops the line).
    replace: Vec<Option<Option<String>>>,
    /// Lines to add after line `n`.
    inserts: Vec<(usize, String)>,
    media: Vec<MediaEdit>,
}

impl<'s, 'a> SdpEditor<'s, 'a> {
    /// Starts editing.
    pub fn new(sdp: &'s Sdp<'a>) -> Self {
        Self {
            sdp,
            replace: vec![None; sdp.lines.len()],
            inserts: Vec::new(),
            media: vec![MediaEdit::default(); sdp.media_count()],
        }
    }

    fn range(&self, section: Section) -> Result<(usize, usize), SdpError> {
        match section {
            Section::Session => Ok((
                0,
                self.sdp
                    .media_starts
                    .first()
                    .copied()
                    .unwrap_or(self.sdp.lines.len()),
            )),
            Section::Media(i) => {
                let m = self.sdp.media_at(i).ok_or(SdpError::NoSuchMedia(i))?;
                Ok((m.line_index(), m.line_index() + m.lines().len()))
            }
        }
    }

    /// Sets the `c=` line of a section (`IN <addrtype> <address>`); adds one after the `m=`
    /// line if a media section has none.
    pub fn set_connection(
        &mut self,
        section: Section,
        addrtype: &str,
        address: &str,
    ) -> Result<&mut Self, SdpError> {
        let (start, end) = self.range(section)?;
        let line = concat(&["c=IN ", addrtype, " ", address]);
        match (start..end).find(|&i| self.sdp.lines[i].kind == b'c') {
            Some(i) => self.replace[i] = Some(Some(line)),
            None if matches!(section, Section::Media(_)) => self.inserts.push((start, line)),
            None => {
                // RFC 8866 §5: c= follows o=, s=, i=, u=, e=, p=; place it before t=.
                let t = (start..end)
                    .find(|&i| self.sdp.lines[i].kind == b't')
                    .unwrap_or(end);
                self.inserts.push((t.saturating_sub(1), line));
            }
        }
        Ok(self)
    }

    /// Rewrites the `o=` address (keeping username and session id) and, if given, the
    /// session version (RFC 3264 §8: increment it when the SDP changes).
    pub fn set_origin(
        &mut self,
        addrtype: &str,
        address: &str,
        version: Option<u64>,
    ) -> Result<&mut Self, SdpError> {
        let o = self.sdp.origin()?;
        let i = (0..self.sdp.lines.len())
            .find(|&i| self.sdp.lines[i].kind == b'o')
            .ok_or(SdpError::BadOrigin)?;
        let v = version.unwrap_or(o.session_version);
        self.replace[i] = Some(Some(format!(
            "o={} {} {v} {} {addrtype} {address}",
            o.username, o.session_id, o.nettype
        )));
        Ok(self)
    }

    /// Replaces the whole `o=` line, so that no field of the peer's origin (user name, session
    /// id, address) reaches the other leg (topology hiding).
    pub fn replace_origin(
        &mut self,
        username: &str,
        session_id: u64,
        version: u64,
        addrtype: &str,
        address: &str,
    ) -> Result<&mut Self, SdpError> {
        let i = (0..self.sdp.lines.len())
            .find(|&i| self.sdp.lines[i].kind == b'o')
            .ok_or(SdpError::BadOrigin)?;
        self.replace[i] = Some(Some(concat(&[
            "o=",
            username,
            " ",
            &Text::decimal(session_id),
            " ",
            &Text::decimal(version),
            " IN ",
            addrtype,
            " ",
            address,
        ])));
        Ok(self)
    }

    /// Topology hiding for the session level: `s=` becomes `s=-`, and the free-text and
    /// contact lines (`i=`, `u=`, `e=`, `p=`; RFC 8866 §5.4-5.6) are dropped, since they can
    /// name hosts, people and numbers of the other side.
    pub fn sanitize_session(&mut self) -> &mut Self {
        let end = self
            .sdp
            .media_starts
            .first()
            .copied()
            .unwrap_or(self.sdp.lines.len());
        for i in 0..end {
            match self.sdp.lines[i].kind {
                b's' => self.replace[i] = Some(Some("s=-".to_owned())),
                b'i' | b'u' | b'e' | b'p' => self.replace[i] = Some(None),
                _ => {}
            }
        }
        self
    }

    /// Topology hiding for every line: drops each line `policy` does not allow at its level,
    /// and a second `c=` of a section or a second `a=rtcp` of a media section (only the first
    /// of each is rewritten to the relay's address, so another would cross as the peer wrote
    /// it). Edits made afterwards (addresses, ports, direction) replace the kept lines.
    pub fn apply_policy(&mut self, policy: &SdpPolicy) -> &mut Self {
        let first_media = self
            .sdp
            .media_starts
            .first()
            .copied()
            .unwrap_or(self.sdp.lines.len());
        let (mut seen_c, mut seen_rtcp) = (false, false);
        for (i, line) in self.sdp.lines.iter().enumerate() {
            if line.kind == b'm' {
                (seen_c, seen_rtcp) = (false, false);
            }
            let level = if i < first_media {
                Level::Session
            } else {
                Level::Media
            };
            let duplicate = match line.kind {
                b'c' => std::mem::replace(&mut seen_c, true),
                b'a' if line
                    .attribute()
                    .is_some_and(|(n, _)| n.eq_ignore_ascii_case("rtcp")) =>
                {
                    std::mem::replace(&mut seen_rtcp, true)
                }
                _ => false,
            };
            if duplicate || !policy.allows(line, level) {
                self.replace[i] = Some(None);
            }
        }
        self
    }

    /// Sets the port of media section `index` (keeping a `/count` suffix).
    pub fn set_port(&mut self, index: usize, port: u16) -> Result<&mut Self, SdpError> {
        self.media
            .get_mut(index)
            .ok_or(SdpError::NoSuchMedia(index))?
            .port = Some(port);
        Ok(self)
    }

    /// Sets `a=rtcp` of a media section (replacing or adding it); `address` is
    /// `(addrtype, address)`.
    pub fn set_rtcp(
        &mut self,
        index: usize,
        port: u16,
        address: Option<(&str, &str)>,
    ) -> Result<&mut Self, SdpError> {
        let (start, end) = self.range(Section::Media(index))?;
        let line = match address {
            Some((t, a)) => format!("a=rtcp:{port} IN {t} {a}"),
            None => format!("a=rtcp:{port}"),
        };
        match self.find_attr(start, end, |n| n == "rtcp") {
            Some(i) => self.replace[i] = Some(Some(line)),
            None => self.inserts.push((end - 1, line)),
        }
        Ok(self)
    }

    /// Removes `a=rtcp` from a media section.
    pub fn remove_rtcp(&mut self, index: usize) -> Result<&mut Self, SdpError> {
        let (start, end) = self.range(Section::Media(index))?;
        if let Some(i) = self.find_attr(start, end, |n| n == "rtcp") {
            self.replace[i] = Some(None);
        }
        Ok(self)
    }

    /// Sets the direction attribute of a section (replacing an existing one or adding one at
    /// the end of the section).
    pub fn set_direction(
        &mut self,
        section: Section,
        dir: Direction,
    ) -> Result<&mut Self, SdpError> {
        let (start, end) = self.range(section)?;
        let line = format!("a={dir}");
        let is_dir = |n: &str| matches!(n, "sendrecv" | "sendonly" | "recvonly" | "inactive");
        match self.find_attr(start, end, is_dir) {
            Some(i) => self.replace[i] = Some(Some(line)),
            None => self.inserts.push((end.saturating_sub(1), line)),
        }
        Ok(self)
    }

    /// Keeps only the payload types in `keep`, in that order (those not offered are ignored),
    /// and drops the `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines of the others.
    pub fn filter_formats(&mut self, index: usize, keep: &[&str]) -> Result<&mut Self, SdpError> {
        let m = self
            .sdp
            .media_at(index)
            .ok_or(SdpError::NoSuchMedia(index))?;
        let desc = m.desc()?;
        let offered: Vec<&str> = desc.format_list().collect();
        let kept: Vec<String> = keep
            .iter()
            .filter(|k| offered.contains(k))
            .map(|k| (*k).to_owned())
            .collect();
        let (start, end) = (m.line_index(), m.line_index() + m.lines().len());
        for i in start..end {
            let Some((name, Some(value))) = self.sdp.lines[i].attribute() else {
                continue;
            };
            if matches!(name, "rtpmap" | "fmtp" | "rtcp-fb") {
                let pt = value.split(' ').next().unwrap_or("");
                if pt != "*" && !kept.iter().any(|k| k == pt) {
                    self.replace[i] = Some(None);
                }
            }
        }
        self.media[index].formats = Some(kept);
        Ok(self)
    }

    /// Renumbers payload types of media section `index` (`(from, to)` pairs) on the `m=` line
    /// and in its `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines (the block list of a `red` fmtp,
    /// RFC 2198 §5, included), after any
    /// [`filter_formats`](Self::filter_formats). The caller keeps the result free of duplicate
    /// numbers.
    pub fn renumber_formats(
        &mut self,
        index: usize,
        map: &[(u8, u8)],
    ) -> Result<&mut Self, SdpError> {
        let m = self
            .sdp
            .media_at(index)
            .ok_or(SdpError::NoSuchMedia(index))?;
        let desc = m.desc()?;
        let target = |f: &str| {
            let pt = f.parse::<u8>().ok()?;
            map.iter().find(|(from, _)| *from == pt).map(|(_, to)| *to)
        };
        let red: Vec<u8> = super::codecs(&m)
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case("red"))
            .map(|c| c.payload_type)
            .collect();
        let current: Vec<String> = match &self.media[index].formats {
            Some(f) => f.clone(),
            None => desc.format_list().map(str::to_owned).collect(),
        };
        self.media[index].formats = Some(
            current
                .iter()
                .map(|f| target(f).map_or_else(|| f.clone(), |t| t.to_string()))
                .collect(),
        );
        let (start, end) = (m.line_index(), m.line_index() + m.lines().len());
        for i in start..end {
            if matches!(self.replace[i], Some(None)) {
                continue;
            }
            let Some((name, Some(value))) = self.sdp.lines[i].attribute() else {
                continue;
            };
            if !matches!(name, "rtpmap" | "fmtp" | "rtcp-fb") {
                continue;
            }
            let (pt, rest) = value.split_once(' ').unwrap_or((value, ""));
            // `a=fmtp:<red> 101/101`: the redundant blocks' payload types.
            let is_red = name == "fmtp" && pt.parse::<u8>().is_ok_and(|p| red.contains(&p));
            let blocks = is_red
                .then(|| {
                    rest.split('/')
                        .map(|b| target(b.trim()).map_or_else(|| b.to_owned(), |t| t.to_string()))
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .filter(|b| b != rest);
            if target(pt).is_some() || blocks.is_some() {
                let t = target(pt).map_or_else(|| pt.to_owned(), |t| t.to_string());
                let rest = blocks.as_deref().unwrap_or(rest);
                let sep = if rest.is_empty() { "" } else { " " };
                self.replace[i] = Some(Some(format!("a={name}:{t}{sep}{rest}")));
            }
        }
        Ok(self)
    }

    /// Appends payload type `pt` to media section `index`'s format list with its `a=rtpmap`
    /// (`encoding`, e.g. `telephone-event/8000`) and, if given, `a=fmtp` line (the SBC adding
    /// a format it terminates itself).
    pub fn append_format(
        &mut self,
        index: usize,
        pt: u8,
        encoding: &str,
        fmtp: Option<&str>,
    ) -> Result<&mut Self, SdpError> {
        let m = self
            .sdp
            .media_at(index)
            .ok_or(SdpError::NoSuchMedia(index))?;
        let desc = m.desc()?;
        let mut formats: Vec<String> = match &self.media[index].formats {
            Some(f) => f.clone(),
            None => desc.format_list().map(str::to_owned).collect(),
        };
        formats.push(pt.to_string());
        self.media[index].formats = Some(formats);
        self.add_attribute(index, &format!("rtpmap:{pt} {encoding}"))?;
        if let Some(f) = fmtp {
            self.add_attribute(index, &format!("fmtp:{pt} {f}"))?;
        }
        Ok(self)
    }

    /// Sets the transport protocol of media section `index` (`RTP/AVP` ⇄ `RTP/SAVP` when the
    /// SBC terminates SRTP on a leg).
    pub fn set_proto(&mut self, index: usize, proto: &str) -> Result<&mut Self, SdpError> {
        self.media
            .get_mut(index)
            .ok_or(SdpError::NoSuchMedia(index))?
            .proto = Some(proto.to_owned());
        Ok(self)
    }

    /// Removes every `a=<name>` line of media section `index`.
    pub fn remove_attributes(&mut self, index: usize, name: &str) -> Result<&mut Self, SdpError> {
        let (start, end) = self.range(Section::Media(index))?;
        for i in start..end {
            if self.sdp.lines[i]
                .attribute()
                .is_some_and(|(n, _)| n == name)
            {
                self.replace[i] = Some(None);
            }
        }
        Ok(self)
    }

    /// Adds `a=<value>` at the end of media section `index` (after earlier additions).
    pub fn add_attribute(&mut self, index: usize, value: &str) -> Result<&mut Self, SdpError> {
        let (_, end) = self.range(Section::Media(index))?;
        self.inserts.push((end - 1, format!("a={value}")));
        Ok(self)
    }

    fn find_attr(&self, start: usize, end: usize, f: impl Fn(&str) -> bool) -> Option<usize> {
        (start..end).find(|&i| self.sdp.lines[i].attribute().is_some_and(|(n, _)| f(n)))
    }

    /// Prints the edited SDP into `out` (cleared first).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        // About the size of the original: one allocation instead of growing line by line.
        out.reserve(self.sdp.lines.iter().map(|l| l.raw.len()).sum::<usize>() + 64);
        let mut media_index = 0;
        for (i, line) in self.sdp.lines.iter().enumerate() {
            let eol: &[u8] = if line.raw.ends_with(b"\r\n") {
                b"\r\n"
            } else if line.raw.ends_with(b"\n") {
                b"\n"
            } else {
                b""
            };
            if line.kind == b'm' {
                let edit = &self.media[media_index];
                media_index += 1;
                let desc = self
                    .sdp
                    .media_at(media_index - 1)
                    .and_then(|m| m.desc().ok());
                match desc {
                    Some(d)
                        if edit.port.is_some()
                            || edit.formats.is_some()
                            || edit.proto.is_some() =>
                    {
                        let port = edit.port.unwrap_or(d.port);
                        out.extend_from_slice(b"m=");
                        out.extend_from_slice(d.media.as_bytes());
                        out.push(b' ');
                        out.extend_from_slice(Text::decimal(u64::from(port)).as_bytes());
                        if let Some(n) = d.port_count {
                            out.push(b'/');
                            out.extend_from_slice(Text::decimal(u64::from(n)).as_bytes());
                        }
                        out.push(b' ');
                        out.extend_from_slice(edit.proto.as_deref().unwrap_or(d.proto).as_bytes());
                        match &edit.formats {
                            Some(f) => f.iter().for_each(|f| {
                                out.push(b' ');
                                out.extend_from_slice(f.as_bytes());
                            }),
                            None if !d.formats.is_empty() => {
                                out.push(b' ');
                                out.extend_from_slice(d.formats.as_bytes());
                            }
                            None => {}
                        }
                        out.extend_from_slice(if eol.is_empty() { b"\r\n" } else { eol });
                    }
                    _ => out.extend_from_slice(line.raw),
                }
            } else {
                match &self.replace[i] {
                    None => out.extend_from_slice(line.raw),
                    Some(None) => {}
                    Some(Some(text)) => {
                        out.extend_from_slice(text.as_bytes());
                        out.extend_from_slice(if eol.is_empty() { b"\r\n" } else { eol });
                    }
                }
            }
            for (_, text) in self.inserts.iter().filter(|(at, _)| *at == i) {
                // The last line may lack its line end (or have a lone CR): complete it.
                if out.ends_with(b"\r") {
                    out.push(b'\n');
                } else if !out.ends_with(b"\n") {
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &[u8] = b"v=0\r\n\
o=- 20518 0 IN IP4 192.168.1.10\r\n\
s=-\r\n\
c=IN IP4 192.168.1.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtcp:40001\r\n\
a=x-unknown: kept  as is \r\n\
m=video 0 RTP/AVP 31\r\n";

    #[test]
    fn untouched_is_identical() {
        let sdp = Sdp::parse(OFFER).expect("valid");
        let mut out = Vec::new();
        SdpEditor::new(&sdp).write(&mut out);
        assert_eq!(out, OFFER);
    }

    #[test]
    fn rewrite_for_the_other_leg() {
        let sdp = Sdp::parse(OFFER).expect("valid");
        let mut out = Vec::new();
        let mut e = SdpEditor::new(&sdp);
        e.set_connection(Section::Session, "IP4", "203.0.113.1")
            .and_then(|e| e.set_origin("IP4", "203.0.113.1", Some(1)))
            .and_then(|e| e.set_port(0, 10000))
            .and_then(|e| e.set_rtcp(0, 10001, Some(("IP4", "203.0.113.1"))))
            .and_then(|e| e.filter_formats(0, &["8", "0"]))
            .and_then(|e| e.set_direction(Section::Media(0), Direction::SendOnly))
            .expect("edits");
        e.write(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "v=0\r\n\
o=- 20518 1 IN IP4 203.0.113.1\r\n\
s=-\r\n\
c=IN IP4 203.0.113.1\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 8 0\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtcp:10001 IN IP4 203.0.113.1\r\n\
a=x-unknown: kept  as is \r\n\
a=sendonly\r\n\
m=video 0 RTP/AVP 31\r\n"
        );
    }

    #[test]
    fn policy_drops_disallowed_and_duplicate_lines() {
        let body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\ni=secret\r\nc=IN IP4 10.0.0.10\r\n\
t=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.10\r\nc=IN IP4 10.0.0.11\r\n\
a=rtcp:4001 IN IP4 10.0.0.10\r\na=rtcp:4003 IN IP4 10.0.0.12\r\na=tool:x\r\na=ptime:20\r\n\
m=audio 4100 RTP/AVP 0\r\nc=IN IP4 10.0.0.13\r\na=rtcp:4101\r\n";
        let sdp = Sdp::parse(body).expect("valid");
        let mut out = Vec::new();
        SdpEditor::new(&sdp)
            .apply_policy(&crate::sdp::SdpPolicy::default())
            .write(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.10\r\na=rtcp:4001 IN IP4 10.0.0.10\r\na=ptime:20\r\n\
m=audio 4100 RTP/AVP 0\r\nc=IN IP4 10.0.0.13\r\na=rtcp:4101\r\n",
            "the first c= and a=rtcp of each section stay (to be rewritten), the rest go"
        );
    }

    #[test]
    fn media_connection_is_added_and_errors_are_typed() {
        let sdp = Sdp::parse(OFFER).expect("valid");
        let mut e = SdpEditor::new(&sdp);
        e.set_connection(Section::Media(1), "IP6", "2001:db8::5")
            .expect("video");
        assert_eq!(e.set_port(7, 1).err(), Some(SdpError::NoSuchMedia(7)));
        let mut out = Vec::new();
        e.write(&mut out);
        let again = Sdp::parse(&out).expect("valid");
        let video = again.media_at(1).expect("video");
        assert_eq!(
            video.connection().and_then(Result::ok).map(|c| c.address),
            Some("2001:db8::5")
        );
    }
}
