//! Hostile inputs found by fuzzing or written by hand: each must yield a typed result (never a
//! panic), with the reaction noted.

use bytes::Bytes;
use sbc_proto::sdp::{Sdp, SdpEditor, Section};
use sbc_proto::sip::{Limits, Message, Reaction, Uri};

fn reaction(raw: &[u8]) -> Result<(), Reaction> {
    Message::parse(Bytes::copy_from_slice(raw), &Limits::default())
        .map(|_| ())
        .map_err(|e| e.reaction())
}

#[test]
fn fuzz_bare_lf_after_non_utf8_bytes() {
    // fuzz/message crash-65f3885d: a header line ending in a bare LF right after the start of
    // the line made the value span end before it started.
    let raw = b"OPTIONS sip:user@com> SIP/2.0\r\nTo: sip:user@example.com\r\nCall-ID: x.1@192.0.\xff\xff\n\nq: 1 INVITE\r\n\r\n";
    assert!(reaction(raw).is_err());
    assert!(reaction(b"OPTIONS sip:a@b SIP/2.0\r\n\n\r\n\r\n").is_err());
    assert!(reaction(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\n\n").is_err());
}

#[test]
fn fuzz_repeated_uri_parameter_is_reflexive() {
    // fuzz/uri crash-c14038f8: the second `par` was compared with the first one of the other
    // URI, so a URI was not equivalent to itself.
    let s = "sip:user;par=u%40eo~d_too.(sip:user;par=u%40eo~d_too.(domdom";
    let u = Uri::parse(s).expect("valid: host `user` with two `par` parameters");
    assert!(u.equivalent(&u));
}

#[test]
fn fuzz_sdp_last_line_with_lone_cr() {
    // fuzz/sdp crash-fd0c4bcf: `v=0\r` without LF; an inserted line after it produced
    // `v=0\r\r\n`, which no longer parsed.
    let sdp = Sdp::parse(b"v=0\r").expect("valid");
    let mut e = SdpEditor::new(&sdp);
    e.set_connection(Section::Session, "IP4", "192.0.2.1")
        .expect("session");
    let mut out = Vec::new();
    e.write(&mut out);
    assert_eq!(out, b"v=0\r\nc=IN IP4 192.0.2.1\r\n");
    assert!(Sdp::parse(&out).is_ok());
}

#[test]
fn hand_written_hostile_inputs() {
    let many_folds = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nX: a{}\r\n\r\n",
        "\r\n ".repeat(5000)
    );
    assert_eq!(reaction(many_folds.as_bytes()), Err(Reaction::Drop));
    let deep_quotes = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nTo: {}\r\n\r\n",
        "\"\\".repeat(3000)
    );
    assert_eq!(reaction(deep_quotes.as_bytes()), Err(Reaction::Drop));
    assert_eq!(reaction(&[0u8; 100]), Err(Reaction::Drop));
    assert_eq!(reaction(b"\r\n\r\n\r\n"), Err(Reaction::Drop));
    assert_eq!(reaction(b"SIP/2.0 200 OK\r\n"), Err(Reaction::Drop));
    assert_eq!(reaction(b"INVITE sip:a@b SIP/2.0"), Err(Reaction::Drop));
}
