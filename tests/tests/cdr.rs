//! Call detail records end to end: 20 SIPp calls with mixed outcomes through the real `sbc`
//! (answered both ways, two of them with RTP; busy 486; cancelled while ringing; refused by the
//! SBC with 404 for want of a route) give exactly 20 JSON lines whose fields match what the
//! SIPp peers did and what crossed the wire (Call-IDs and numbers on both links, from
//! captures), and the same 20 rows in a PostgreSQL server the test runs itself (inside the
//! SBC's namespace, as `nobody`, removed at the end); `GET /api/v1/cdrs` filters and pages
//! them.

mod media_common;

use std::{collections::HashMap, path::PathBuf, thread, time::Duration};

use media_common::MediaLab;
use sbc_e2e::{
    postgres::Postgres,
    sipp::{self, Step, Step::*},
};
use serde_json::Value;

const PBX: &str = "198.18.1.2:5060";
const CARRIER: &str = "198.18.2.2:5060";
const SBC_INSIDE: &str = "198.18.1.1:5060";
const SBC_OUTSIDE: &str = "198.18.2.1:5060";
const PG_PORT: u16 = 5432;
/// RTP packets in SIPp's G.711 sample, and the UDP payload of each (RTP header + 30 ms).
const PCAP_PACKETS: u64 = 236;
const PCAP_PAYLOAD: u64 = 252;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Answered,
    AnsweredWithRtp,
    Inbound,
    Busy,
    Cancelled,
    Refused,
}

fn ok(code: u16) -> Step {
    Recv {
        code,
        optional: false,
    }
}

fn maybe(code: u16) -> Step {
    Recv {
        code,
        optional: true,
    }
}

fn bye(uac: bool) -> Step {
    InDialog {
        method: "BYE",
        cseq: 2,
        sdp: None,
        uac,
    }
}

/// The caller's and the callee's scenario (no callee: the SBC answers).
fn steps(kind: Kind) -> (Vec<Step>, Option<Vec<Step>>) {
    let answered = |rtp: bool| {
        let mut v = vec![Invite { sdp: true }, maybe(100), maybe(180), ok(200)];
        v.push(Ack2xx {
            sdp: false,
            cseq: 1,
        });
        if rtp {
            v.push(PlayPcap {
                path: "/usr/share/sip-tester/g711a.pcap",
            });
            v.push(Pause { ms: 8_000 });
        } else {
            v.push(Pause { ms: 300 });
        }
        v.extend([bye(true), ok(200)]);
        v
    };
    match kind {
        Kind::Answered | Kind::Inbound => (answered(false), Some(sipp::answering_callee())),
        Kind::AnsweredWithRtp => (answered(true), Some(sipp::answering_callee())),
        Kind::Busy => (
            vec![Invite { sdp: true }, maybe(100), ok(486), AckNon2xx],
            Some(vec![
                RecvRequest { method: "INVITE" },
                Respond {
                    code: 486,
                    reason: "Busy Here",
                    sdp: None,
                },
                RecvRequest { method: "ACK" },
            ]),
        ),
        Kind::Cancelled => (
            vec![
                Invite { sdp: true },
                maybe(100),
                ok(180),
                Pause { ms: 200 },
                Cancel,
                ok(200),
                ok(487),
                AckNon2xx,
            ],
            Some(vec![
                RecvRequest { method: "INVITE" },
                Respond {
                    code: 180,
                    reason: "Ringing",
                    sdp: None,
                },
                RecvRequest { method: "CANCEL" },
                Respond {
                    code: 200,
                    reason: "OK",
                    sdp: None,
                },
                RespondToInvite {
                    code: 487,
                    reason: "Request Terminated",
                },
                RecvRequest { method: "ACK" },
            ]),
        ),
        Kind::Refused => (
            vec![Invite { sdp: true }, maybe(100), ok(404), AckNon2xx],
            None,
        ),
    }
}

/// What one call must leave in its record.
struct Expect {
    kind: Kind,
    /// The caller's Call-ID as SIPp made it (`<call>-<pid>@<ip>`).
    caller_call_id: String,
    status: u64,
    hangup: &'static str,
}

/// The directory of the test's CDR files, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn twenty_calls_give_twenty_records_in_the_file_and_in_postgres() {
    if !sbc_e2e::require_root("cdr") {
        return;
    }
    let dir = TempDir(std::env::temp_dir().join(sbc_e2e::netns::unique("sbccdr")));
    std::fs::create_dir_all(&dir.0).expect("cdr dir");
    let path = dir.0.join("cdr.jsonl");
    let extra = format!(
        r#"
[[route]]
name = "us"
prefix = "1555"
trunks = ["carrier"]
[[trunk.number]]
number = "called"
prefix = "1"
add = "+"
[cdr]
path = "{}"
fsync = "always"
postgres = "postgresql://sbc@127.0.0.1:{PG_PORT}/postgres"
"#,
        path.display()
    );
    // The routes and number rule land after `[admin]`; `[[trunk.number]]` belongs to the
    // lab's one trunk.
    let lab = MediaLab::start_admin("scdr", "xdp = \"off\"", &extra, None);
    let pg = Postgres::start(&lab.lab.sbc, &lab.instance, PG_PORT).expect("postgres");
    let cap_in = sbc_e2e::capture::Capture::start(&lab.lab.pbx, "pbx0").expect("capture");
    let cap_out = sbc_e2e::capture::Capture::start(&lab.lab.carrier, "car0").expect("capture");

    let mut plan = Vec::new();
    for (kind, n) in [
        (Kind::Answered, 5),
        (Kind::AnsweredWithRtp, 1),
        (Kind::Inbound, 2),
        (Kind::Busy, 4),
        (Kind::Cancelled, 4),
        (Kind::Refused, 4),
    ] {
        plan.extend(std::iter::repeat_n(kind, n));
    }
    assert_eq!(plan.len(), 20);
    let mut expects = Vec::new();
    for kind in plan {
        let inbound = kind == Kind::Inbound;
        let (caller_ns, callee_ns, caller_addr, callee_addr, dest) = if inbound {
            (&lab.lab.carrier, &lab.lab.pbx, CARRIER, PBX, SBC_OUTSIDE)
        } else {
            (&lab.lab.pbx, &lab.lab.carrier, PBX, CARRIER, SBC_INSIDE)
        };
        let (caller_steps, callee_steps) = steps(kind);
        let caller_xml =
            sipp::write_scenario("caller", &sipp::scenario("caller", true, &caller_steps));
        let callee_xml = callee_steps
            .map(|s| sipp::write_scenario("callee", &sipp::scenario("callee", false, &s)));
        let mut callee = callee_xml
            .as_ref()
            .map(|x| sipp::run(callee_ns, x.path(), callee_addr, None, &[]));
        thread::sleep(Duration::from_millis(300));
        let service = if kind == Kind::Refused {
            "9990"
        } else {
            "15551234567"
        };
        let mut caller = sipp::run_service(
            caller_ns,
            caller_xml.path(),
            caller_addr,
            Some(dest),
            service,
            &[],
        );
        let caller_ip = caller_addr.split(':').next().unwrap_or_default();
        let caller_call_id = format!("1-{}@{caller_ip}", caller.pid());
        let a = caller.wait_timeout(Duration::from_secs(70));
        assert!(a.is_some_and(|s| s.success()), "{kind:?} caller: {a:?}");
        if let Some(c) = callee.as_mut() {
            let b = c.wait_timeout(Duration::from_secs(10));
            assert!(b.is_some_and(|s| s.success()), "{kind:?} callee: {b:?}");
        }
        let (status, hangup) = match kind {
            Kind::Answered | Kind::AnsweredWithRtp | Kind::Inbound => (200, "caller"),
            Kind::Busy => (486, "callee"),
            Kind::Cancelled => (487, "caller"),
            Kind::Refused => (404, "sbc"),
        };
        expects.push(Expect {
            kind,
            caller_call_id,
            status,
            hangup,
        });
    }
    // The last record is written when its call ends: at most a moment after SIPp is done.
    let mut file = Vec::new();
    for _ in 0..50 {
        file = records(&path);
        if file.len() >= 20 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let inside_wire = String::from_utf8_lossy(&cap_in.stop()).into_owned();
    let outside_wire = String::from_utf8_lossy(&cap_out.stop()).into_owned();
    assert_eq!(file.len(), 20, "one line per call attempt: {file:#?}");

    let by_caller: HashMap<String, &Value> = file
        .iter()
        .map(|r| {
            let key = if r["direction"] == "inbound" {
                &r["outside_call_id"]
            } else {
                &r["inside_call_id"]
            };
            (key.as_str().unwrap_or_default().to_owned(), r)
        })
        .collect();
    for e in &expects {
        let r = by_caller
            .get(&e.caller_call_id)
            .unwrap_or_else(|| panic!("no record for {} ({:?})", e.caller_call_id, e.kind));
        let what = format!("{:?} {}: {r:#}", e.kind, e.caller_call_id);
        assert_eq!(r["status"], e.status, "{what}");
        assert_eq!(r["hangup"], e.hangup, "{what}");
        let answered = e.status == 200;
        assert_eq!(r["answer_time"].is_string(), answered, "{what}");
        let duration = r["duration_s"].as_f64().unwrap_or(-1.0);
        if answered {
            assert!((0.2..60.0).contains(&duration), "{what}");
            assert!(
                r["answer_time"].as_str() >= r["start_time"].as_str(),
                "{what}"
            );
        } else {
            assert_eq!(duration, 0.0, "{what}");
        }
        assert!(r["end_time"].as_str() >= r["start_time"].as_str(), "{what}");
        if e.kind == Kind::Inbound {
            assert_eq!(r["direction"], "inbound", "{what}");
            assert_eq!(r["outside_calling"], "sipp", "{what}");
            assert_eq!(r["outside_called"], "15551234567", "{what}");
            assert_eq!(r["inside_called"], "15551234567", "{what}");
            // The PBX saw the inside leg's Call-ID.
            let id = r["inside_call_id"].as_str().unwrap_or("?");
            assert!(inside_wire.contains(&format!("Call-ID: {id}")), "{what}");
            assert_eq!(r["trunk"], "carrier", "{what}");
            continue;
        }
        assert_eq!(r["direction"], "outbound", "{what}");
        assert_eq!(r["inside_calling"], "sipp", "{what}");
        if e.kind == Kind::Refused {
            assert_eq!(r["inside_called"], "9990", "{what}");
            assert!(
                r["outside_call_id"].is_null(),
                "never reached a carrier: {what}"
            );
            assert!(r["trunk"].is_null(), "{what}");
            continue;
        }
        assert_eq!(r["trunk"], "carrier", "{what}");
        assert_eq!(r["inside_called"], "15551234567", "{what}");
        // After the trunk's rule, and as the carrier received it.
        assert_eq!(r["outside_called"], "+15551234567", "{what}");
        assert_eq!(r["outside_calling"], "sipp", "{what}");
        let id = r["outside_call_id"].as_str().unwrap_or("?");
        let invite = outside_wire
            .split("INVITE sip:")
            .skip(1)
            .find(|m| m.contains(&format!("Call-ID: {id}")))
            .unwrap_or_else(|| panic!("the carrier never saw Call-ID {id}: {what}"));
        assert!(invite.starts_with("+15551234567@"), "{what}");
        let media = r["media"].as_array().cloned().unwrap_or_default();
        match e.kind {
            Kind::AnsweredWithRtp => {
                assert_eq!(r["media_path"], "userspace", "{what}");
                assert_eq!(media.len(), 1, "{what}");
                let from_pbx = &media[0]["inside"];
                assert_eq!(from_pbx["packets"], PCAP_PACKETS, "{what}");
                assert_eq!(from_pbx["bytes"], PCAP_PACKETS * PCAP_PAYLOAD, "{what}");
                assert_eq!(from_pbx["lost"], 0, "{what}");
                assert!(from_pbx["jitter_ms"].is_number(), "{what}");
                assert_eq!(
                    media[0]["outside"]["packets"], 0,
                    "the carrier sent none: {what}"
                );
            }
            Kind::Answered => {
                assert_eq!(r["media_path"], "none", "no RTP in this call: {what}");
                assert_eq!(media.len(), 1, "one audio stream: {what}");
            }
            _ => assert_eq!(r["media_path"], "none", "{what}"),
        }
    }

    // The same rows in PostgreSQL: counted by psql, then read back through the API (which
    // reads the database when one is configured) and compared field by field.
    let mut count = String::new();
    for _ in 0..300 {
        count = pg.psql("SELECT count(*) FROM sbc_cdr").unwrap_or_default();
        if count.trim() == "20" {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count.trim(), "20", "rows in PostgreSQL");
    let busy = pg
        .psql("SELECT count(*) FROM sbc_cdr WHERE status = 486 AND hangup = 'callee'")
        .expect("psql");
    assert_eq!(busy.trim(), "4");
    let page = lab.json("GET", "/api/v1/cdrs?limit=100", None, 200);
    assert_eq!(page["source"], "postgres");
    let rows = page["cdrs"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 20);
    for (row, line) in rows.iter().zip(&file) {
        assert_eq!(
            row, line,
            "the database row equals the file line, in the same order"
        );
    }
    // Filters and paging.
    let refused = lab.json("GET", "/api/v1/cdrs?number=9990", None, 200);
    assert_eq!(refused["cdrs"].as_array().map(Vec::len), Some(4));
    let id = &expects[0].caller_call_id;
    let one = lab.json("GET", &format!("/api/v1/cdrs?call_id={id}"), None, 200);
    assert_eq!(one["cdrs"][0]["inside_call_id"], id.as_str());
    let first = lab.json("GET", "/api/v1/cdrs?limit=8&status=200", None, 200);
    assert_eq!(first["cdrs"].as_array().map(Vec::len), Some(8));
    assert!(first["next_offset"].is_null(), "exactly 8 answered calls");
    let since = file[10]["start_time"].as_str().unwrap_or_default();
    let later = lab.json(
        "GET",
        &format!("/api/v1/cdrs?since={since}&limit=3"),
        None,
        200,
    );
    assert_eq!(later["cdrs"].as_array().map(Vec::len), Some(3));
    assert_eq!(later["next_offset"], 3);
    let bad = lab
        .request("GET", "/api/v1/cdrs?since=yesterday", None)
        .expect("api");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_cdr_written_total{sink=\"file\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sbc_cdr_written_total{sink=\"postgres\"} 20"),
        "{metrics}"
    );
    drop(pg);
}
