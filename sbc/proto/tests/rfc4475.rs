//! The RFC 4475 torture messages (`testdata/rfc4475/`, byte-exact from the RFC's archive).
//!
//! Valid messages (RFC 4475 §3.1.1, §3.2, §3.3 where the parser's job is to parse, §3.4) must
//! parse to the facts the RFC describes; invalid ones (§3.1.2, §3.3.8–9, §3.3.2–3) must get the
//! reaction the RFC asks for, with a specific reason phrase.

use bytes::Bytes;
use sbc_proto::sdp::Sdp;
use sbc_proto::sip::{
    Contact, Editor, HeaderName, Host, Limits, Message, Method, ParseError, Problem, Reaction,
    StatusCode, Uri, unescape, unquote,
};

macro_rules! data {
    ($name:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            "../testdata/rfc4475/",
            $name,
            ".dat"
        )))
    };
}

fn ok(buf: Bytes) -> Message {
    match Message::parse(buf, &Limits::default()) {
        Ok(m) => m,
        Err(e) => panic!("expected a valid message, got {e}"),
    }
}

fn err(buf: Bytes) -> ParseError {
    match Message::parse(buf, &Limits::default()) {
        Ok(m) => panic!("expected an error, parsed {m:?}"),
        Err(e) => e,
    }
}

fn respond(code: u16, reason: &'static str) -> Reaction {
    Reaction::Respond { code, reason }
}

/// Every valid message prints back byte for byte when untouched, and reparses; the values the
/// parser kept while checking (tags, top branch, Call-ID) equal those decoded on demand.
fn round_trips(m: &Message) {
    assert_eq!(m.from_tag(), m.from().tag());
    assert_eq!(m.to_tag(), m.to().tag());
    assert_eq!(m.top_branch(), m.top_via().branch());
    assert_eq!(Ok(m.call_id()), m.headers().call_id());
    let mut out = Vec::new();
    Editor::new(m).write(&mut out);
    if m.content_length().is_some() {
        assert_eq!(out, m.as_bytes());
    }
    let again = ok(Bytes::from(out));
    assert_eq!(
        again.headers().len(),
        m.headers().len() + usize::from(m.content_length().is_none())
    );
    assert_eq!(again.body(), m.body());
}

fn sip_uri<'a>(u: &Uri<'a>) -> sbc_proto::sip::SipUri<'a> {
    match u {
        Uri::Sip(s) => *s,
        other => panic!("expected a SIP URI, got {other:?}"),
    }
}

// ---- §3.1.1 valid messages ----

#[test]
fn wsinv_short_tortuous_invite() {
    let m = ok(data!("wsinv"));
    round_trips(&m);
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(
        m.request_uri_str(),
        Some("sip:vivekg@chair-dnrc.example.com;unknownparam")
    );
    assert_eq!(m.to().tag(), Some("1918181833n"));
    let from = m.from();
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(
        unquote(from.display_name.unwrap_or_default()),
        "J Rosenberg \\\""
    );
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.call_id(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!((m.cseq().seq, &m.cseq().method), (9, &Method::Invite));
    let vias: Vec<_> = m.via().map(|v| v.expect("valid Via")).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (
            vias[0].transport,
            vias[0].host.to_string(),
            vias[0].branch()
        ),
        ("UDP", "192.0.2.2".into(), Some("390skdjuw"))
    );
    assert_eq!(
        (vias[1].transport, vias[1].branch()),
        ("TCP", Some("z9hG4bK9ikj8"))
    );
    assert_eq!(
        (vias[2].host.to_string(), vias[2].branch()),
        ("192.168.255.111".into(), Some("z9hG4bK30239"))
    );
    let h = m.headers();
    assert_eq!(
        h.first(HeaderName::Subject).map(|s| s.value),
        Some(&b""[..])
    );
    let nf = h.all_named("NewFangledHeader").next().expect("kept");
    assert_eq!(nf.value, b"newfangled value\r\n continued newfangled value");
    assert_eq!(
        h.all_named("UnknownHeaderWithUnusualValue")
            .next()
            .map(|x| x.value),
        Some(&b";;,,;;,;"[..])
    );
    let route = m.routes().next().expect("route").expect("valid");
    assert_eq!(
        route.uri_str,
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
    );
    assert!(sip_uri(&route.uri).lr());
    let contact = m.contacts().next().expect("contact").expect("valid");
    assert_eq!(contact.q(), Some(330));
    let addr = contact.addr().expect("address");
    assert_eq!(addr.params.get("newparam"), Some(Some("newvalue")));
    assert_eq!(addr.params.get("secondparam"), Some(None));
    assert_eq!(m.content_length(), Some(150));
    assert_eq!(m.body().len(), 150);
    assert!(Sdp::parse(m.body()).is_ok());
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let m = ok(data!("intmeth"));
    round_trips(&m);
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method().map(Method::as_str), Some(method));
    assert!(matches!(m.method(), Some(Method::Extension(_))));
    assert_eq!(m.cseq().method.as_str(), method);
    let ruri = m.request_uri().expect("sip URI");
    let u = sip_uri(&ruri);
    assert_eq!(
        u.user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password,
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.host, Host::Domain("example.com"));
    assert_eq!(m.top_via().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        unquote(m.to().display_name.unwrap_or_default()),
        "BEL:\u{7} NUL:\u{0} DEL:\u{7f}"
    );
    let from = m.from();
    assert_eq!(from.display_name, Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.params.get("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(m.call_id(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(m.max_forwards(), Some(255));
    let ext = m
        .headers()
        .all_named("extensionHeader-!.%*+_`'~")
        .next()
        .expect("kept");
    assert_eq!(ext.value_str(), Some("\u{feff}\u{5927}\u{505c}\u{96fb}"));
}

#[test]
fn esc01_valid_percent_escaping() {
    let m = ok(data!("esc01"));
    round_trips(&m);
    let ruri = m.request_uri().expect("uri");
    let u = sip_uri(&ruri);
    assert_eq!(u.user, Some("sips%3Auser%40example.com"));
    assert_eq!(
        unescape(u.user.unwrap_or_default()).as_ref(),
        b"sips:user@example.com"
    );
    assert_eq!(u.host, Host::Domain("example.net"));
    let to = m.to();
    assert!(
        to.uri
            .equivalent(&Uri::parse("sip:user@example.com").expect("uri"))
    );
    assert_eq!(
        unescape(sip_uri(&m.from().uri).user.unwrap_or_default()).as_ref(),
        b"I have spaces"
    );
    let c = m.contacts().next().expect("contact").expect("valid");
    let cu = sip_uri(&c.addr().expect("addr").uri);
    assert!(cu.equivalent(&sip_uri(
        &Uri::parse("sip:caller@host5.example.net;lr;name=value%25%34%31").expect("uri")
    )));
    assert_eq!(unescape("v%61lue%25%34%31").as_ref(), b"value%41");
}

#[test]
fn escnull_escaped_nulls() {
    let m = ok(data!("escnull"));
    round_trips(&m);
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(
        unescape(sip_uri(&m.to().uri).user.unwrap_or_default()).as_ref(),
        b"null-\0-null"
    );
    let users: Vec<Vec<u8>> = m
        .contacts()
        .map(|c| {
            let c = c.expect("valid");
            unescape(
                sip_uri(&c.addr().expect("addr").uri)
                    .user
                    .unwrap_or_default(),
            )
            .into_owned()
        })
        .collect();
    assert_eq!(users, [b"\0".to_vec(), b"\0\0".to_vec()]);
}

#[test]
fn esc02_percent_that_is_not_an_escape() {
    let m = ok(data!("esc02"));
    round_trips(&m);
    // RE%47IST%45R is an extension method, not REGISTER: tokens are not unescaped.
    assert_eq!(m.method(), Some(&Method::Extension("RE%47IST%45R".into())));
    assert_eq!(m.to().display_name, Some("\"%Z%45\""));
    assert_eq!(m.top_via().branch(), Some("z9hG4bK209%fzsnel234"));
    // C%6Fntact is an extension header, not a Contact.
    assert_eq!(m.contacts().count(), 2);
    assert!(m.headers().all_named("C%6Fntact").next().is_some());
}

#[test]
fn lwsdisp_no_space_before_angle() {
    let m = ok(data!("lwsdisp"));
    round_trips(&m);
    assert_eq!(m.from().display_name, Some("caller"));
    assert_eq!(m.from().tag(), Some("323"));
}

#[test]
fn longreq_long_values() {
    let m = ok(data!("longreq"));
    round_trips(&m);
    let to = m.to();
    assert!(unquote(to.display_name.unwrap_or_default()).ends_with("extreme proportion"));
    let u = sip_uri(&to.uri);
    assert_eq!(u.port, Some(6000));
    assert_eq!(u.params.get("longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename"), Some(Some("shortvalue")));
    let tag = m.from().tag().unwrap_or_default();
    assert!(tag.starts_with("1298298298") && tag.len() > 100, "{tag}");
    assert!(
        m.call_id().starts_with("longreq.onereallyreally") && m.call_id().ends_with("longcallid")
    );
    let vias: Vec<_> = m.via().map(|v| v.expect("valid")).collect();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, Host::Domain("sip33.example.com"));
    assert_eq!(vias[0].branch(), None);
    let last = vias[33];
    assert_eq!(last.received(), Some("192.0.2.5"));
    assert_eq!(last.branch().map(str::len), Some(215));
    let long = m
        .headers()
        .iter()
        .find(|h| h.raw_name.starts_with(b"Unknown-LongLong"))
        .expect("kept");
    assert_eq!(long.name, HeaderName::Other);
    assert_eq!(m.body().len(), 150);
}

#[test]
fn dblreq_extra_octets_after_the_message() {
    let raw = data!("dblreq");
    let m = ok(raw.clone());
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.content_length(), Some(0));
    assert!(m.body().is_empty());
    assert!(m.as_bytes().len() < raw.len());
    assert_eq!(m.call_id(), "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
}

#[test]
fn semiuri_semicolons_in_user_part() {
    let m = ok(data!("semiuri"));
    round_trips(&m);
    let ruri = m.request_uri().expect("uri");
    let u = sip_uri(&ruri);
    assert_eq!(u.user, Some("user;par=u%40example.net"));
    assert_eq!(u.host, Host::Domain("example.com"));
    assert!(u.params.is_empty());
    assert_eq!(m.headers().values(HeaderName::Accept).count(), 6);
}

#[test]
fn transports_varied_and_unknown() {
    let m = ok(data!("transports"));
    round_trips(&m);
    let t: Vec<_> = m.via().map(|v| v.expect("valid").transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn mpart01_multipart_body() {
    let m = ok(data!("mpart01"));
    round_trips(&m);
    assert_eq!(m.method(), Some(&Method::Message));
    let ct = m.headers().content_type().expect("valid").expect("present");
    assert_eq!((ct.mtype, ct.subtype), ("multipart", "mixed"));
    assert_eq!(ct.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
    assert_eq!(m.body().len(), 553);
    assert!(m.body().starts_with(b"--7a9cbec02ceef655\r\n"));
    assert!(
        m.body().ends_with(b"--7a9cbec02ceef655--\r\n")
            || m.body().ends_with(b"--7a9cbec02ceef655--")
    );
    // The binary part is not UTF-8: the body is never decoded as text.
    assert!(std::str::from_utf8(m.body()).is_err());
    assert_eq!(m.top_via().rport(), Some(None));
    assert_eq!(
        m.headers().user_agent().expect("text"),
        Some("SIPimp.org/0.2.5 (curses)")
    );
}

#[test]
fn unreason_unusual_reason_phrase() {
    let m = ok(data!("unreason"));
    round_trips(&m);
    assert_eq!(m.status(), Some(StatusCode::OK));
    let reason = m.reason_phrase().expect("reason");
    assert!(reason.starts_with("= 2**3 * 5**2 "));
    assert!(reason.ends_with("\u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}"));
    assert_eq!(m.body().len(), 154);
}

#[test]
fn noreason_empty_reason_phrase() {
    let m = ok(data!("noreason"));
    round_trips(&m);
    assert_eq!(m.status(), Some(StatusCode::TRYING));
    assert_eq!(m.reason_phrase(), Some(""));
}

// ---- §3.1.2 invalid messages ----

#[test]
fn invalid_messages_get_the_reaction_the_rfc_asks_for() {
    let cases: Vec<(&str, Bytes, Reaction)> = vec![
        // §3.1.2.1: ";;,;,," in Via.
        (
            "badinv01",
            data!("badinv01"),
            respond(400, "Malformed Via Header"),
        ),
        // §3.1.2.2: Content-Length larger than the datagram.
        (
            "clerr",
            data!("clerr"),
            respond(400, "Body Shorter Than Content-Length"),
        ),
        // §3.1.2.3: negative Content-Length.
        (
            "ncl",
            data!("ncl"),
            respond(400, "Malformed Content-Length Header"),
        ),
        // §3.1.2.4: CSeq > 2**32-1 (also Max-Forwards 300 and huge expiries).
        (
            "scalar02",
            data!("scalar02"),
            respond(400, "Malformed CSeq Header"),
        ),
        // §3.1.2.5: overlarge values in a response: never answered.
        ("scalarlg", data!("scalarlg"), Reaction::Drop),
        // §3.1.2.6: unterminated quoted display name.
        (
            "quotbal",
            data!("quotbal"),
            respond(400, "Malformed To Header"),
        ),
        // §3.1.2.7: <> around the Request-URI.
        (
            "ltgtruri",
            data!("ltgtruri"),
            respond(400, "Malformed Request-URI"),
        ),
        // §3.1.2.8: LWS inside the Request-URI.
        (
            "lwsruri",
            data!("lwsruri"),
            respond(400, "Malformed Request-Line"),
        ),
        // §3.1.2.9: several SPs between Request-Line elements.
        (
            "lwsstart",
            data!("lwsstart"),
            respond(400, "Malformed Request-Line"),
        ),
        // §3.1.2.10: SP at the end of the Request-Line.
        (
            "trws",
            data!("trws"),
            respond(400, "Malformed Request-Line"),
        ),
        // §3.1.2.11: escaped headers in the Request-URI.
        (
            "escruri",
            data!("escruri"),
            respond(400, "Headers Not Allowed in Request-URI"),
        ),
        // §3.1.2.13: a URI with headers outside <>.
        (
            "regbadct",
            data!("regbadct"),
            respond(400, "Malformed Contact Header"),
        ),
        // §3.1.2.14: spaces inside <> of To.
        (
            "badaspec",
            data!("badaspec"),
            respond(400, "Malformed To Header"),
        ),
        // §3.1.2.15 as archived: no empty line after the headers; still answerable.
        (
            "baddn",
            data!("baddn"),
            respond(400, "Incomplete Header Section"),
        ),
        // §3.1.2.15 with the empty line restored: non-token characters in the display name.
        (
            "baddn-crlf",
            data!("variants/baddn-crlf"),
            respond(400, "Malformed From Header"),
        ),
        // §3.1.2.16: SIP/7.0.
        (
            "badvers",
            data!("badvers"),
            respond(505, "Version Not Supported"),
        ),
        // §3.1.2.17 and §3.1.2.18: CSeq method differs from the request method.
        (
            "mismatch01",
            data!("mismatch01"),
            respond(400, "CSeq Method Does Not Match"),
        ),
        (
            "mismatch02",
            data!("mismatch02"),
            respond(400, "CSeq Method Does Not Match"),
        ),
        // §3.1.2.19: a response code of 4294967301: dropped.
        ("bigcode", data!("bigcode"), Reaction::Drop),
        // §3.3.1: no Call-ID, From or To. "Ideally, it will respond with a 400": the top Via
        // routes the answer and CSeq (with the branch) lets the client match it.
        ("insuf", data!("insuf"), respond(400, "Missing From Header")),
        // §3.3.2 and §3.3.3: Request-URI schemes the element does not support.
        (
            "unkscm",
            data!("unkscm"),
            respond(416, "Unsupported URI Scheme"),
        ),
        (
            "novelsc",
            data!("novelsc"),
            respond(416, "Unsupported URI Scheme"),
        ),
        // §3.3.8: several values in single-value headers.
        (
            "multi01",
            data!("multi01"),
            respond(400, "Multiple From Headers"),
        ),
        // §3.3.9: two Content-Length headers.
        (
            "mcl01",
            data!("mcl01"),
            respond(400, "Multiple Content-Length Headers"),
        ),
    ];
    for (name, buf, want) in cases {
        let e = err(buf);
        assert_eq!(e.reaction(), want, "{name}: {e}");
    }
}

#[test]
fn rejected_requests_carry_what_is_needed_to_answer() {
    let ParseError::Rejected { problem, headers } = err(data!("badvers")) else {
        panic!("badvers must be answerable")
    };
    assert_eq!(problem, Problem::BadVersion);
    assert_eq!(headers.call_id().ok(), Some("badvers.31417@c.example.com"));
    assert!(headers.top_via().is_ok());
    let ParseError::Rejected { problem, headers } = err(data!("insuf")) else {
        panic!("insuf must be answerable from its Via and CSeq")
    };
    assert_eq!(problem, Problem::Missing(HeaderName::From));
    assert!(headers.top_via().is_ok() && headers.cseq().is_ok());
}

#[test]
fn baddate_is_relayed_untouched() {
    // §3.1.2.12: the Date is not in GMT. The SBC does not interpret Date, so like a proxy it
    // passes the header through byte for byte.
    let m = ok(data!("baddate"));
    round_trips(&m);
    let date = m.headers().first(HeaderName::Date).expect("kept");
    assert_eq!(date.value, b"Fri, 01 Jan 2010 16:00:00 EST");
}

// ---- §3.2 transaction layer ----

#[test]
fn badbranch_bare_magic_cookie() {
    let m = ok(data!("badbranch"));
    round_trips(&m);
    assert_eq!(m.top_via().branch(), Some("z9hG4bK"));
}

// ---- §3.3 application layer: parsing must succeed, the application decides ----

#[test]
fn unksm2_unknown_schemes_in_headers() {
    let m = ok(data!("unksm2"));
    round_trips(&m);
    let Uri::Other(to) = m.to().uri else {
        panic!("opaque To")
    };
    assert_eq!((to.scheme, to.rest), ("isbn", "2983792873"));
    let Uri::Other(from) = m.from().uri else {
        panic!("opaque From")
    };
    assert_eq!(from.scheme, "http");
    let c = m.contacts().next().expect("contact").expect("valid");
    assert!(matches!(c.addr().map(|a| a.uri), Some(Uri::Other(o)) if o.scheme == "name"));
}

#[test]
fn bext01_require_and_proxy_require() {
    let m = ok(data!("bext01"));
    round_trips(&m);
    let req: Vec<_> = m.headers().require().map(|r| r.expect("token")).collect();
    assert_eq!(req, ["nothingSupportsThis", "nothingSupportsThisEither"]);
    let preq: Vec<_> = m
        .headers()
        .proxy_require()
        .map(|r| r.expect("token"))
        .collect();
    assert_eq!(preq, ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]);
    assert_eq!(m.top_via().transport, "TLS");
}

#[test]
fn invut_unknown_content_type() {
    let m = ok(data!("invut"));
    round_trips(&m);
    let ct = m.headers().content_type().expect("valid").expect("present");
    assert_eq!((ct.mtype, ct.subtype), ("application", "unknownformat"));
    assert!(!ct.is_sdp());
    assert_eq!(m.body().len(), 40);
}

#[test]
fn regaut01_unknown_authorization_scheme() {
    let m = ok(data!("regaut01"));
    round_trips(&m);
    let a = m
        .headers()
        .authorization()
        .next()
        .expect("present")
        .expect("valid");
    assert_eq!(a.scheme, "NoOneKnowsThisScheme");
    assert_eq!(a.param("opaque-data"), Some("here"));
}

#[test]
fn bcast_broadcast_via() {
    let m = ok(data!("bcast"));
    round_trips(&m);
    let second = m.via().nth(1).expect("two").expect("valid");
    assert_eq!(second.host, Host::Ipv4(std::net::Ipv4Addr::BROADCAST));
}

#[test]
fn zeromf_max_forwards_zero() {
    let m = ok(data!("zeromf"));
    round_trips(&m);
    assert_eq!(m.max_forwards(), Some(0));
}

#[test]
fn cparam_contact_params_bare_and_bracketed() {
    let bare = ok(data!("cparam01"));
    round_trips(&bare);
    let c = bare.contacts().next().expect("contact").expect("valid");
    let a = *c.addr().expect("addr");
    // Bare addr-spec: ";unknownparam" is a contact parameter, not a URI parameter.
    assert!(a.params.contains("unknownparam"));
    assert!(sip_uri(&a.uri).params.is_empty());
    let bracketed = ok(data!("cparam02"));
    round_trips(&bracketed);
    let c = bracketed
        .contacts()
        .next()
        .expect("contact")
        .expect("valid");
    let a = *c.addr().expect("addr");
    assert!(a.params.is_empty());
    assert!(sip_uri(&a.uri).params.contains("unknownparam"));
}

#[test]
fn regescrt_escaped_headers_in_bracketed_contact() {
    let m = ok(data!("regescrt"));
    round_trips(&m);
    let c = m.contacts().next().expect("contact").expect("valid");
    let Some(Contact::Addr(a)) = Some(c) else {
        panic!("address")
    };
    assert_eq!(
        sip_uri(&a.uri).headers,
        Some("Route=%3Csip:sip.example.com%3E")
    );
}

#[test]
fn sdp01_accept_without_sdp() {
    let m = ok(data!("sdp01"));
    round_trips(&m);
    assert_eq!(
        m.headers().first(HeaderName::Accept).map(|a| a.value),
        Some(&b"text/nobodyKnowsThis"[..])
    );
    let sdp = Sdp::parse(m.body()).expect("sdp");
    assert_eq!(sdp.media_count(), 2);
}

// ---- §3.4 backward compatibility ----

#[test]
fn inv2543_rfc2543_syntax() {
    let m = ok(data!("inv2543"));
    round_trips(&m);
    assert_eq!(m.content_length(), None);
    assert_eq!(m.max_forwards(), None);
    assert_eq!(m.top_via().branch(), None);
    assert!(!m.top_via().has_rfc3261_branch());
    // Without Content-Length the body is the rest of the datagram (RFC 3261 §18.3).
    assert!(m.body().starts_with(b"v=0"));
    let to = m.to();
    assert!(!to.bracketed);
    // A bare addr-spec cannot carry URI parameters: ";user=phone" belongs to the header
    // (RFC 3261 §20.10), which is exactly the RFC 2543 ambiguity §3.4.1 describes.
    assert_eq!(to.params.get("user"), Some(Some("phone")));
    assert!(sip_uri(&to.uri).params.is_empty());
    let rr = m.record_routes().next().expect("rr").expect("valid");
    assert_eq!(sip_uri(&rr.uri).maddr(), Some("ss1.example.com"));
}

#[test]
fn every_file_is_covered() {
    // 49 messages of the RFC plus the restored variant; each has a test above.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rfc4475");
    let n = std::fs::read_dir(&dir)
        .expect("testdata")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dat"))
        })
        .count();
    assert_eq!(n, 49);
}
