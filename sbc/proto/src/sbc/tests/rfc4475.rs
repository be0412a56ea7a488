//! Every RFC 4475 torture request that parses, from the PBX through the whole core (policy,
//! B2BUA, the real media table), judged by the answer it gets: the RFC's preferred handling where
//! it names one (`sdp01` → 406, `invut` → 415, `bext01` → 420, unknown methods → 501, an
//! unknown dialog → 481), and otherwise what the SBC's configuration says (REGISTER from the
//! PBX is refused with 405 by default, OPTIONS to the SBC answered 200, valid INVITEs relayed
//! to the carrier). Messages that do not parse are judged in `sbc-proto/tests/rfc4475.rs` and
//! on the wire, UDP and TCP, in `sbc/src/transport/tests/rfc4475.rs`.

use super::*;
use crate::sip::{HeaderName, Method};

/// What the core must do with one torture request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    /// Answered to the PBX with this final status (and nothing sent to the carrier).
    Answer(u16),
    /// Relayed to the carrier as a new INVITE (after a 100 to the PBX).
    Relayed,
}

const EXPECTED: &[(&str, Judged)] = &[
    ("badbranch", Judged::Answer(200)),
    ("baddate", Judged::Relayed),
    ("bext01", Judged::Answer(420)),
    ("cparam01", Judged::Answer(405)),
    ("cparam02", Judged::Answer(405)),
    ("dblreq", Judged::Answer(405)),
    ("esc01", Judged::Relayed),
    ("esc02", Judged::Answer(501)),
    ("escnull", Judged::Answer(405)),
    ("intmeth", Judged::Answer(501)),
    ("inv2543", Judged::Relayed),
    ("invut", Judged::Answer(415)),
    ("longreq", Judged::Relayed),
    ("lwsdisp", Judged::Answer(200)),
    ("mpart01", Judged::Answer(415)),
    ("regaut01", Judged::Answer(405)),
    ("regescrt", Judged::Answer(405)),
    ("sdp01", Judged::Answer(406)),
    ("semiuri", Judged::Answer(200)),
    ("transports", Judged::Answer(200)),
    ("unksm2", Judged::Answer(405)),
    ("wsinv", Judged::Answer(481)),
    ("zeromf", Judged::Answer(200)),
];

/// The header a refusal must carry, by status (RFC 3261 §21.4.6, §21.4.13, §20.32).
fn mandatory(code: u16) -> Option<HeaderName> {
    match code {
        405 => Some(HeaderName::Allow),
        415 => Some(HeaderName::Accept),
        420 => Some(HeaderName::Unsupported),
        _ => None,
    }
}

fn corpus() -> Vec<(String, Bytes)> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, Bytes::from(std::fs::read(&p).expect("read")))
        })
        .collect()
}

#[test]
fn every_torture_request_gets_its_answer_through_the_core() {
    let mut judged = Vec::new();
    for (name, data) in corpus() {
        let Ok(msg) = Message::parse(data, &Limits::default()) else {
            continue;
        };
        if !msg.is_request() {
            continue;
        }
        let want = EXPECTED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, j)| *j)
            .unwrap_or_else(|| panic!("{name}: a parsing request with no expected answer"));
        // A fresh core each time, without the flood guard of the other tests (49 messages
        // from one source would be banned).
        let mut cfg = config();
        cfg.guard = GuardConfig::default();
        let mut lab = Lab::new(cfg);
        lab.with_media(|s, now, m| {
            s.handle_datagram(now, peer(Side::Inside, PBX), msg, Duration::ZERO, m)
        });
        let sent = lab.sent();
        let finals: Vec<&Message> = sent
            .iter()
            .filter(|(to, m)| to.side == Side::Inside && m.status().is_some_and(|s| s.is_final()))
            .map(|(_, m)| m)
            .collect();
        let relayed = sent
            .iter()
            .any(|(to, m)| to.side == Side::Outside && m.method() == Some(&Method::Invite));
        match want {
            Judged::Answer(code) => {
                assert!(!relayed, "{name}: relayed, expected {code}");
                assert_eq!(finals.len(), 1, "{name}: one final answer, got {sent:?}");
                let got = finals[0].status().map(|s| s.as_u16());
                assert_eq!(got, Some(code), "{name}");
                if let Some(h) = mandatory(code) {
                    assert!(
                        finals[0].headers().all(h).next().is_some(),
                        "{name}: {code} without {h:?}"
                    );
                }
            }
            Judged::Relayed => {
                assert!(relayed, "{name}: not relayed to the carrier: {sent:?}");
                assert!(finals.is_empty(), "{name}: answered {finals:?}");
            }
        }
        judged.push(name);
    }
    assert_eq!(
        judged.len(),
        EXPECTED.len(),
        "every expected message was judged: {judged:?}"
    );
}

#[test]
fn accept_decides_whether_an_invite_can_be_answered() {
    let invite = |accept: &str| {
        let mut cfg = config();
        cfg.guard = GuardConfig::default();
        let mut lab = Lab::new(cfg);
        let text = format!(
            "INVITE sip:15551234567@10.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP {PBX};branch=z9hG4bKacc\n\
             Max-Forwards: 70\n\
             From: <sip:100@10.0.0.2>;tag=a1\n\
             To: <sip:15551234567@10.0.0.1>\n\
             Call-ID: accept@10.0.0.2\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:100@{PBX}>\n\
             {accept}Content-Length: 0\n\n"
        );
        lab.deliver(peer(Side::Inside, PBX), &text);
        lab.sent()
            .iter()
            .find(|(_, m)| m.status().is_some_and(|s| s.is_final()))
            .and_then(|(_, m)| m.status().map(|s| s.as_u16()))
    };
    assert_eq!(invite(""), None, "no Accept: SDP is fine, the call goes on");
    assert_eq!(invite("Accept: application/sdp;level=1, text/html\n"), None);
    assert_eq!(invite("Accept: application/*\n"), None);
    assert_eq!(invite("Accept: */*\n"), None);
    assert_eq!(invite("Accept: text/nobodyknowsthis\n"), Some(406));
    assert_eq!(
        invite("Accept: \n"),
        Some(406),
        "an empty Accept takes nothing"
    );
}
