//! Property tests: parse → print → parse is the identity on what was parsed, and edits leave
//! every other byte intact.

use bytes::Bytes;
use proptest::prelude::*;
use sbc_proto::sdp::{Sdp, SdpEditor, Section};
use sbc_proto::sip::{Editor, HeaderName, Limits, Message, Uri};

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]([a-z0-9-]{0,7}[a-z0-9])?(\\.[a-z][a-z0-9]{0,6}){0,2}",
        (0u8..=255, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

/// Optional linear whitespace, sometimes with a fold (RFC 3261 §7.3.1).
fn lws() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just(" "),
        Just("  "),
        Just("\t"),
        Just("\r\n "),
        Just(" \r\n\t")
    ]
}

fn name_case(name: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), name.len()).prop_map(move |up| {
        name.chars()
            .zip(up)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

fn uri() -> impl Strategy<Value = String> {
    (
        prop::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,10}|%[0-9A-F]{2}[a-z]{1,4}"),
        host(),
        prop::option::of(1u16..),
        prop::collection::vec(("[a-z]{1,6}", prop::option::of("[a-z0-9]{1,6}")), 0..3),
    )
        .prop_map(|(user, host, port, params)| {
            let mut s = String::from("sip:");
            if let Some(u) = user {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            for (n, v) in params {
                s.push(';');
                s.push_str(&n);
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(&v);
                }
            }
            s
        })
}

fn name_addr() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(String::new()),
            "[a-zA-Z]{1,8}( [a-zA-Z]{1,8})?".prop_map(|d| format!("{d} ")),
            "[a-zA-Z ,;<>@]{0,10}".prop_map(|d| format!("\"{d}\" ")),
        ],
        uri(),
        prop::option::of(token()),
        lws(),
    )
        .prop_map(|(display, uri, tag, ws)| {
            let tag = tag.map(|t| format!("{ws};{ws}tag={t}")).unwrap_or_default();
            format!("{display}<{uri}>{tag}")
        })
}

fn via() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("UDP"),
            Just("TCP"),
            Just("TLS"),
            Just("SCTP"),
            Just("WS")
        ],
        host(),
        prop::option::of(1u16..),
        token(),
        any::<bool>(),
        lws(),
    )
        .prop_map(|(t, h, port, branch, rport, ws)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let rport = if rport { ";rport" } else { "" };
            format!("SIP/2.0/{t}{ws} {h}{port};branch=z9hG4bK{branch}{rport}")
        })
}

fn extension() -> impl Strategy<Value = (String, String)> {
    (
        "X-[A-Za-z0-9-]{1,10}".prop_filter("not a known header", |n| {
            HeaderName::from_bytes(n.as_bytes()) == HeaderName::Other
        }),
        "[ -~]{0,30}".prop_map(|v| v.trim().to_owned()),
    )
}

#[derive(Debug, Clone)]
struct Generated {
    text: String,
    body: Vec<u8>,
}

fn request() -> impl Strategy<Value = Generated> {
    (
        prop_oneof![
            Just("INVITE"),
            Just("BYE"),
            Just("OPTIONS"),
            Just("REGISTER"),
            Just("FOO")
        ],
        uri(),
        prop::collection::vec(via(), 1..4),
        any::<bool>(),
        name_addr(),
        name_addr(),
        "[a-zA-Z0-9.!%*_+`'~()<>:\"/?{}-]{1,20}(@[a-z0-9.]{1,10})?",
        0u32..=u32::MAX,
        prop::collection::vec(extension(), 0..5),
        prop::collection::vec(any::<u8>(), 0..64),
        (name_case("Via"), name_case("Content-Length"), any::<bool>()),
    )
        .prop_map(
            |(method, ruri, vias, one_line, from, to, call_id, seq, ext, body, names)| {
                let (via_name, cl_name, compact) = names;
                let mut s = format!("{method} {ruri} SIP/2.0\r\n");
                if one_line {
                    s.push_str(&format!("{via_name}: {}\r\n", vias.join(" ,\r\n ")));
                } else {
                    for v in &vias {
                        s.push_str(&format!("{via_name}: {v}\r\n"));
                    }
                }
                let (f, t, i) = if compact {
                    ("f", "t", "i")
                } else {
                    ("From", "To", "Call-ID")
                };
                s.push_str(&format!("{f}: {from}\r\n{t}: {to}\r\n{i}: {call_id}\r\n"));
                s.push_str(&format!("CSeq: {seq} {method}\r\nMax-Forwards: 70\r\n"));
                for (n, v) in &ext {
                    s.push_str(&format!("{n}: {v}\r\n"));
                }
                s.push_str(&format!("{cl_name}: {}\r\n\r\n", body.len()));
                Generated { text: s, body }
            },
        )
}

fn bytes(g: &Generated) -> Bytes {
    let mut v = g.text.clone().into_bytes();
    v.extend_from_slice(&g.body);
    Bytes::from(v)
}

/// (name, raw name, value) per field.
type Fields = Vec<(HeaderName, Vec<u8>, Vec<u8>)>;

fn facts(m: &Message) -> (Fields, Vec<u8>, Option<String>) {
    let h = m
        .headers()
        .iter()
        .map(|h| (h.name, h.raw_name.to_vec(), h.value.to_vec()))
        .collect();
    (h, m.body().to_vec(), m.request_uri_str().map(str::to_owned))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_print_parse_is_identity(g in request()) {
        let raw = bytes(&g);
        let m = Message::parse(raw.clone(), &Limits::default()).map_err(|e| TestCaseError::fail(format!("{e}\n{}", g.text)))?;
        prop_assert_eq!(m.as_bytes(), &raw[..]);
        prop_assert_eq!(m.body(), &g.body[..]);
        let mut out = Vec::new();
        Editor::new(&m).write(&mut out);
        prop_assert_eq!(&out[..], &raw[..]);
        let again = Message::parse(Bytes::from(out), &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(facts(&again), facts(&m));
        prop_assert_eq!(again.top_via(), m.top_via());
        prop_assert_eq!(again.from(), m.from());
        prop_assert_eq!(again.to(), m.to());
        prop_assert_eq!(again.cseq(), m.cseq());
    }

    #[test]
    fn edits_keep_the_rest_intact(g in request(), pick in any::<prop::sample::Index>(), op in 0u8..4, new_body in prop::collection::vec(any::<u8>(), 0..32)) {
        let m = Message::parse(bytes(&g), &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Edit one extension header (or none) and the body; everything else must survive.
        let ext: Vec<usize> = (0..m.headers().len()).filter(|&i| m.headers().get(i).is_some_and(|h| h.name == HeaderName::Other)).collect();
        let target = (!ext.is_empty()).then(|| ext[pick.index(ext.len())]);
        let mut e = Editor::new(&m);
        match (target, op) {
            (Some(i), 0) => { e.remove(i); }
            (Some(i), 1) => { e.replace(i, &b"replaced"[..]); }
            (Some(i), 2) => { e.insert_before(i, "X-New", &b"inserted"[..]); }
            (Some(i), _) => { e.set_param(i, "p", Some("v".into())); }
            (None, _) => { e.append("X-New", &b"appended"[..]); }
        }
        e.set_body(&new_body[..]);
        let mut out = Vec::new();
        e.write(&mut out);
        let again = Message::parse(Bytes::from(out), &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.body(), &new_body[..]);
        prop_assert_eq!(again.content_length(), u32::try_from(new_body.len()).ok());
        let untouched = |m: &Message| -> Vec<Vec<u8>> {
            m.headers().iter().filter(|h| h.name != HeaderName::Other && h.name != HeaderName::ContentLength).map(|h| h.line.to_vec()).collect()
        };
        prop_assert_eq!(untouched(&again), untouched(&m));
        prop_assert_eq!(again.request_uri_str(), m.request_uri_str());
    }

    #[test]
    fn uri_roundtrip_and_escapes(u in uri()) {
        let parsed = Uri::parse(&u).map_err(|e| TestCaseError::fail(format!("{e}: {u}")))?;
        prop_assert_eq!(parsed.as_str(), &u[..]);
        prop_assert!(parsed.equivalent(&parsed));
        // Escaping an unreserved user character yields an equivalent URI (RFC 3261 §19.1.4).
        if let Some(rest) = u.strip_prefix("sip:a").filter(|r| r.contains('@')) {
            let escaped = format!("sip:%61{rest}");
            let other = Uri::parse(&escaped).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(parsed.equivalent(&other));
        }
    }

    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::parse(Bytes::from(data.clone()), &Limits::default()).map(|m| m.headers().len());
        let _ = Sdp::parse(&data);
    }

    #[test]
    fn mutated_messages_never_panic(g in request(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        let mut raw = bytes(&g).to_vec();
        let i = at.index(raw.len());
        if cut { raw.truncate(i) } else { raw[i] = byte }
        if let Ok(m) = Message::parse(Bytes::from(raw), &Limits::default()) {
            let mut out = Vec::new();
            Editor::new(&m).write(&mut out);
            prop_assert!(Message::parse(Bytes::from(out), &Limits::default()).is_ok());
        }
    }

    #[test]
    fn sdp_untouched_is_identical_and_edits_are_local(
        ports in prop::collection::vec(1u16.., 1..4),
        extra in prop::collection::vec("a=[a-z-]{1,8}(:[ -~]{0,12})?", 0..4),
        lf_only in any::<bool>(),
    ) {
        let eol = if lf_only { "\n" } else { "\r\n" };
        let mut s = format!("v=0{eol}o=- 1 2 IN IP4 192.0.2.1{eol}s=-{eol}c=IN IP4 192.0.2.1{eol}t=0 0{eol}");
        for p in &ports {
            s.push_str(&format!("m=audio {p} RTP/AVP 0 8 101{eol}a=rtpmap:0 PCMU/8000{eol}a=rtpmap:8 PCMA/8000{eol}a=rtpmap:101 telephone-event/8000{eol}"));
            for x in &extra {
                s.push_str(x.trim_end());
                s.push_str(eol);
            }
        }
        let sdp = Sdp::parse(s.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut out = Vec::new();
        SdpEditor::new(&sdp).write(&mut out);
        prop_assert_eq!(&out[..], s.as_bytes());
        let mut e = SdpEditor::new(&sdp);
        e.set_port(0, 4242).and_then(|e| e.filter_formats(0, &["8"])).and_then(|e| e.set_connection(Section::Session, "IP4", "203.0.113.9")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        e.write(&mut out);
        let edited = Sdp::parse(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let m0 = edited.media_at(0).ok_or_else(|| TestCaseError::fail("media"))?;
        prop_assert_eq!(m0.desc().map(|d| (d.port, d.formats)), Ok((4242, "8")));
        prop_assert_eq!(m0.rtpmaps().count(), 1);
        let attrs = |s: &Sdp<'_>, i: usize| s.media_at(i).map(|m| m.attributes().filter(|(n, _)| *n != "rtpmap").map(|(n, v)| (n.to_owned(), v.map(str::to_owned))).collect::<Vec<_>>());
        prop_assert_eq!(attrs(&edited, 0), attrs(&sdp, 0));
        for i in 1..ports.len() {
            prop_assert_eq!(edited.media_at(i).map(|m| m.lines().iter().map(|l| l.raw.to_vec()).collect::<Vec<_>>()), sdp.media_at(i).map(|m| m.lines().iter().map(|l| l.raw.to_vec()).collect::<Vec<_>>()));
        }
    }
}
