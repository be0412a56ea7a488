//! Entry points for the `cargo fuzz` targets in `fuzz/` (not part of the API).
//!
//! Each function must never panic for any input except through its own assertions, which
//! state properties the parser promises.

#[cfg(any(test, feature = "sim-media"))]
mod b2bua;
mod digest;
mod frame;
mod media;
mod srtp;

use bytes::Bytes;

#[cfg(any(test, feature = "sim-media"))]
pub use b2bua::b2bua;
pub use digest::digest;
pub use frame::frame;
pub use media::media;
pub use srtp::srtp;

use crate::sdp::{CodecPolicy, Direction, PayloadMap, Sdp, SdpEditor, Section};
use crate::sip::{Editor, Limits, Message, MessageWriter, ParseError, StatusCode, Uri};

/// A glance at a message ([`crate::sip::Headline::scan`]) never differs from the parser's
/// answer: where the parser accepts the message, the scan gives the same start line, Call-ID
/// and CSeq, or declines.
pub fn headline(data: &[u8]) {
    let scanned = crate::sip::Headline::scan(data);
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data), &Limits::default())
        && let Some(h) = scanned
    {
        assert_eq!(
            h,
            crate::sip::Headline::of(&m),
            "the scan and the parser differ"
        );
    }
}

/// A request's numbers read by a scan ([`crate::sip::Parties::scan`]) never differ from the
/// parser's answer: where the parser accepts the message, the scan gives the same calling and
/// called numbers, or declines.
pub fn parties(data: &[u8]) {
    let scanned = crate::sip::Parties::scan(data);
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data), &Limits::default())
        && let Some(p) = scanned
    {
        assert_eq!(
            p,
            crate::sip::Parties::of(&m),
            "the scan and the parser differ"
        );
    }
}

/// The scan of a request the SBC sends ([`crate::b2bua::sent_request`]) never differs from the
/// parser's answer: where the parser accepts the message, the scan gives the same method, CSeq
/// number, body presence and top Via branch, or declines.
pub fn sent_request(data: &[u8]) {
    let scanned = crate::b2bua::sent_request::SentRequest::scan(data);
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data), &Limits::default())
        && let Some(s) = scanned
    {
        let parsed = (
            m.method().cloned(),
            m.cseq().seq,
            !m.body().is_empty(),
            m.top_branch(),
        );
        assert_eq!(
            (Some(s.method), s.cseq, s.has_body, Some(&*s.branch)),
            parsed,
            "the scan and the parser differ"
        );
    }
}

/// Parses a message and exercises every typed view; checks that an untouched message prints
/// back to the same bytes (plus a Content-Length when it had none).
pub fn message(data: &[u8]) {
    let limits = Limits::default();
    match Message::parse(Bytes::copy_from_slice(data), &limits) {
        Ok(m) => {
            touch(&m);
            let mut out = Vec::new();
            Editor::new(&m).write(&mut out);
            if m.content_length().is_some() {
                assert_eq!(
                    out,
                    m.as_bytes(),
                    "untouched message must print identically"
                );
            }
            let again = Message::parse(Bytes::from(out), &limits);
            assert!(again.is_ok(), "printed message must parse: {again:?}");
        }
        Err(e) => {
            let _ = e.reaction();
            if let ParseError::Rejected { headers, problem } = e {
                let mut out = Vec::new();
                let status = StatusCode::new(problem.status().0).unwrap_or(StatusCode::BAD_REQUEST);
                let opts = crate::sip::edit::ResponseOptions {
                    to_tag: Some("t"),
                    ..Default::default()
                };
                MessageWriter::response_to(&mut out, &headers, status, "x", &opts).finish(b"");
                let _ = Message::parse(Bytes::from(out), &limits);
            }
        }
    }
}

fn touch(m: &Message) {
    let h = m.headers();
    // What the parser kept while checking equals what is decoded on demand.
    assert_eq!(m.from_tag(), m.from().tag());
    assert_eq!(m.to_tag(), m.to().tag());
    assert_eq!(m.top_branch(), m.top_via().branch());
    assert_eq!(Ok(m.call_id()), h.call_id());
    let _ = (
        m.top_via(),
        m.from(),
        m.to(),
        m.call_id(),
        m.cseq(),
        m.request_uri(),
    );
    let _ = (
        m.max_forwards(),
        m.content_length(),
        m.body(),
        m.status(),
        m.reason_phrase(),
    );
    h.via().for_each(|v| {
        let _ = v.map(|v| (v.branch(), v.received(), v.rport(), v.maddr(), v.ttl()));
    });
    h.contacts().for_each(|c| {
        let _ = c.map(|c| (c.expires(), c.q()));
    });
    h.routes().chain(h.record_routes()).for_each(|r| {
        let _ = r.map(|r| r.tag());
    });
    let _ = (
        h.content_type(),
        h.rseq(),
        h.rack(),
        h.expires(),
        h.min_expires(),
        h.min_se(),
    );
    let _ = (
        h.retry_after(),
        h.session_expires(),
        h.user_agent(),
        h.server(),
    );
    h.require()
        .chain(h.supported())
        .chain(h.allow())
        .chain(h.proxy_require())
        .chain(h.unsupported())
        .for_each(drop);
    h.authorization().chain(h.www_authenticate()).for_each(|a| {
        let _ = a.map(|a| a.param("nonce"));
    });
    h.reasons().for_each(|r| {
        let _ = r.map(|r| (r.cause(), r.text()));
    });
}

/// Parses a URI; a parsed URI must be equivalent to itself.
pub fn uri(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = Uri::parse(s) {
        assert!(u.equivalent(&u), "URI equivalence must be reflexive");
        assert_eq!(u.as_str(), s);
    }
}

/// Routes a message to a signaling shard: the first byte is the shard count, the rest the
/// message. The shard is always in range, one shard takes everything, and a message carrying
/// a shard's label in its To tag (requests) or branch (responses) goes to that shard.
pub fn shard(data: &[u8]) {
    use crate::shard::{MAX_SHARDS, ShardId, of_token, route};
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let count = u16::from(first) % (MAX_SHARDS + 1);
    let Ok(m) = Message::parse(Bytes::copy_from_slice(rest), &Limits::default()) else {
        return;
    };
    let shard = route(&m, count);
    assert!(
        shard.index() < usize::from(count.max(1)),
        "shard out of range"
    );
    assert_eq!(route(&m, 1), ShardId::new(0), "one shard takes everything");
    assert_eq!(
        route(&m, count),
        shard,
        "routing is a function of the message"
    );
    let minted = if m.is_request() {
        m.to_tag()
    } else {
        m.top_branch().and_then(|b| b.strip_prefix("z9hG4bK"))
    };
    if count > 1
        && let Some(k) = minted.and_then(|t| of_token(t, count))
    {
        assert_eq!(shard, k, "a labelled identifier names its shard");
    }
}

/// Parses SDP; an untouched SDP must print identically and an edited one must parse again.
pub fn sdp(data: &[u8]) {
    let Ok(sdp) = Sdp::parse(data) else { return };
    let _ = (sdp.origin(), sdp.connection(), sdp.direction());
    for m in sdp.media() {
        let _ = (
            m.desc(),
            m.rtcp(),
            m.rtcp_mux(),
            m.effective_direction(),
            m.fmtp("0"),
        );
        m.rtpmaps().for_each(drop);
        // Codec policy and payload-type mapping over whatever the section names.
        let policy = CodecPolicy {
            allow: vec!["PCMA".into(), "telephone-event".into()],
            deny: Vec::new(),
        };
        if let Ok(kept) = policy.select(&m) {
            assert!(kept.iter().all(|pt| *pt < 128));
        }
        let map = PayloadMap::between(&m, &m);
        assert!(map.is_identity(), "a section maps onto itself unchanged");
    }
    let mut out = Vec::new();
    SdpEditor::new(&sdp).write(&mut out);
    assert_eq!(out, data, "untouched SDP must print identically");
    let mut e = SdpEditor::new(&sdp);
    let _ = e.set_connection(Section::Session, "IP4", "192.0.2.1");
    let _ = e.set_origin("IP4", "192.0.2.1", Some(7));
    for i in 0..sdp.media_count() {
        let _ = e.set_port(i, 1234);
        let _ = e.set_rtcp(i, 1235, None);
        let _ = e.filter_formats(i, &["0", "8", "100", "101"]);
        let _ = e.renumber_formats(i, &[(100, 110), (101, 96)]);
        let _ = e.set_direction(Section::Media(i), Direction::SendOnly);
    }
    e.write(&mut out);
    assert!(Sdp::parse(&out).is_ok(), "edited SDP must parse");
}

/// Parses a message, applies edits, and checks that the result parses with the edits applied
/// and the other fields unchanged.
pub fn roundtrip(data: &[u8]) {
    let limits = Limits::default();
    let Ok(m) = Message::parse(Bytes::copy_from_slice(data), &limits) else {
        return;
    };
    let mut out = Vec::new();
    let mut e = Editor::new(&m);
    e.set_param(0, "x-fuzz", Some("1".into()))
        .set_body(&b"fuzz"[..]);
    e.write(&mut out);
    let Ok(again) = Message::parse(Bytes::from(out), &limits) else {
        // Setting a parameter on an arbitrary first header may legitimately break its grammar
        // (e.g. a Call-ID); only the body edit is then checked.
        let mut out = Vec::new();
        Editor::new(&m).set_body(&b"fuzz"[..]).write(&mut out);
        let again = Message::parse(Bytes::from(out), &limits);
        assert!(
            again.is_ok(),
            "body edit must keep the message valid: {again:?}"
        );
        return;
    };
    assert_eq!(again.body(), b"fuzz");
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.cseq(), m.cseq());
    let lines = |m: &Message| {
        m.headers()
            .iter()
            .skip(1)
            .filter(|h| h.name != crate::sip::HeaderName::ContentLength)
            .map(|h| h.line.to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lines(&again),
        lines(&m),
        "fields other than the edited ones must be unchanged"
    );
}

/// Feeds a byte stream to the stream framer in chunks whose sizes come from the first bytes of
/// the input, and checks that framing does not depend on how the stream was cut: the frames
/// found must be those found with the whole stream at once, and an error must be reached in
/// both or neither.
pub fn framer(data: &[u8]) {
    // A small limit, so TooLarge is reachable with short inputs.
    let limits = Limits {
        max_message: 1024,
        ..Limits::default()
    };
    let (plan, stream) = data.split_at(data.len().min(4));
    let whole = frames(&[stream], &limits);
    let mut chunks = Vec::new();
    let mut rest = stream;
    for size in plan.iter().cycle().map(|b| usize::from(*b % 32) + 1) {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    let chunked = frames(&chunks, &limits);
    assert_eq!(
        whole, chunked,
        "framing must not depend on how the stream was cut"
    );
}

/// What a framer finds in a stream that arrives as `chunks`: the frames in order, and whether
/// it ended in an error (the kind may depend on how much was buffered when it was noticed).
fn frames(chunks: &[&[u8]], limits: &Limits) -> (Vec<crate::sip::Frame>, bool) {
    use crate::sip::{Frame, Framer};
    let mut framer = Framer::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut found = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.frame(&buf, limits) {
                Ok(Frame::Incomplete) => break,
                Ok(f @ (Frame::KeepAlive(n) | Frame::Complete(n))) => {
                    assert!(n > 0 && n <= buf.len(), "{f:?} with {} bytes", buf.len());
                    found.push(f);
                    buf.drain(..n);
                }
                Err(_) => return (found, true),
            }
        }
    }
    (found, false)
}

/// Reads the first report block of arbitrary RTCP; a report's loss count must be a 24-bit
/// signed value. The same bytes as an RTP packet through the relay's payload-type rewrite
/// with RFC 2198 redundancy mapped: the packet keeps its length, and only the RTP header's
/// type byte and payload bytes (block headers) may change.
pub fn rtcp(data: &[u8]) {
    let _ = crate::rtcp::is_rtcp(data);
    if let Some(r) = crate::rtcp::first_report(data) {
        assert!(
            (-(1 << 23)..(1 << 23)).contains(&r.cumulative_lost),
            "cumulative loss out of the 24-bit range: {r:?}"
        );
    }
    let sender = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 0 100 101\r\na=rtpmap:100 red/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let receiver = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 0 110 96\r\na=rtpmap:110 red/8000\r\na=rtpmap:96 telephone-event/8000\r\n";
    let (Ok(a), Ok(b)) = (Sdp::parse(sender), Sdp::parse(receiver)) else {
        unreachable!("constant SDP parses");
    };
    let (Some(a), Some(b)) = (a.media_at(0), b.media_at(0)) else {
        unreachable!("constant SDP has a section");
    };
    let map = PayloadMap::between(&a, &b);
    let mut packet = data.to_vec();
    crate::media::payload::rewrite(&map, &mut packet);
    assert_eq!(packet.len(), data.len());
    if data.len() >= 12 {
        assert_eq!(packet[0], data[0]);
        assert_eq!(
            packet[2..12],
            data[2..12],
            "sequence, timestamp and SSRC kept"
        );
    }
}

/// DTMF interworking over untrusted bytes: INFO bodies in both formats, telephone-event
/// payloads, and a detector fed the input as a packet stream. Properties: a parsed INFO digit
/// writes back to a body that parses to the same digit; an event payload survives a write and
/// read; the detector never reports more than one digit per event end.
pub fn dtmf(data: &[u8]) {
    use crate::dtmf::{Detector, Event, InfoFormat, MAX_DURATION_MS, parse_info, write_info};
    let mut out = Vec::new();
    for format in [InfoFormat::DtmfRelay, InfoFormat::Dtmf] {
        if let Some(d) = parse_info(format, data) {
            assert!(d.duration_ms.is_none_or(|ms| ms <= MAX_DURATION_MS));
            write_info(format, d.digit, d.duration_ms.unwrap_or(100), &mut out);
            assert_eq!(
                parse_info(format, &out).map(|again| again.digit),
                Some(d.digit)
            );
        }
    }
    if let Some(e) = Event::parse(data) {
        let again = Event::parse(&e.to_bytes());
        assert_eq!(
            again.map(|a| (a.code, a.end, a.duration)),
            Some((e.code, e.end, e.duration))
        );
    }
    // The input as a stream of 8-byte records: 4 bytes timestamp, 4 bytes payload.
    let mut detector = Detector::new();
    for chunk in data.chunks_exact(8) {
        let ts = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        assert!(detector.observe(ts, &chunk[4..], 8000).count() <= 2);
    }
    let _ = detector.flush(8000);
}
