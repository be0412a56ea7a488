//! The admin API over real HTTP against the real `sbc` in the lab, with real calls (SIPp as
//! PBX and carrier): authentication (401/403), calls (list, filters, paging, detail, DELETE
//! with BYE on both legs), trunks, routes, ACLs, bans, configuration (GET/PUT/PATCH, reload,
//! SIGHUP) with calls in progress (none dropped), persistence across a restart, the OpenAPI
//! document, and every documented operation driven with malformed input (never a 5xx).

mod media_common;

use sbc_lab::sipp::{run_args as sipp, wait_ok};
use std::{
    thread,
    time::{Duration, Instant},
};

use media_common::MediaLab;
use nix::sys::signal::Signal;
use sbc_e2e::process::Owned;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123";
const READ_TOKEN: &str = "read-token-for-tests-45678";

/// Outbound calls PBX → carrier: (uas, uac).
fn outbound_calls(lab: &MediaLab, calls: &str, hold_ms: &str) -> (Owned, Owned) {
    let uas = sipp(
        &lab.lab.carrier,
        &["-sn", "uas", "-i", "198.18.2.2", "-p", "5060", "-m", calls],
    );
    thread::sleep(Duration::from_millis(300));
    let uac = sipp(
        &lab.lab.pbx,
        &[
            "-sn",
            "uac",
            "-i",
            "198.18.1.2",
            "-p",
            "5060",
            "-s",
            "15551234567",
            "-m",
            calls,
            "-l",
            calls,
            "-r",
            "20",
            "-d",
            hold_ms,
            "198.18.1.1:5060",
        ],
    );
    (uas, uac)
}

/// Polls `GET /api/v1/calls` until `want` calls are answered (bounded).
fn wait_answered(lab: &MediaLab, want: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = lab.json("GET", "/api/v1/calls?state=answered", None, 200);
        if v["total"].as_u64() == Some(want as u64) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never {want} answered calls: {v}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn status(
    lab: &MediaLab,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let r = lab
        .request_as(method, path, auth, Some(body.as_bytes()))
        .unwrap_or_else(|| panic!("{method} {path}: unreachable"));
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn start() -> MediaLab {
    MediaLab::start_admin(
        "adm",
        "xdp = \"off\"",
        &format!("token = \"{ADMIN_TOKEN}\"\nread_token = \"{READ_TOKEN}\""),
        Some(ADMIN_TOKEN),
    )
}

#[test]
fn admin_api_end_to_end() {
    if !sbc_e2e::require_root("admin_api") {
        return;
    }
    let mut lab = start();
    auth(&lab);
    views(&lab);
    live_reconfiguration_keeps_calls(&lab);
    end_call_sends_bye_both_ways(&lab);
    malformed_input_never_gets_a_server_error(&lab);
    // A restart comes back with what the API persisted.
    let mut old = lab.sbc.take().expect("sbc running");
    old.signal(Signal::SIGTERM);
    assert!(
        old.wait_timeout(Duration::from_secs(10)).is_some(),
        "sbc did not stop on SIGTERM"
    );
    lab.start_sbc();
    let c = lab.json("GET", "/api/v1/config", None, 200);
    assert_eq!(
        c["sip"]["t1_ms"], 450,
        "persisted change survives a restart: {c}"
    );
}

fn auth(lab: &MediaLab) {
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let read = format!("Bearer {READ_TOKEN}");
    let r = lab
        .request_as("GET", "/healthz", None, None)
        .expect("healthz");
    assert_eq!(r.status, 200, "/healthz needs no token");
    for path in ["/readyz", "/metrics", "/api/v1/calls", "/api/v1/config"] {
        let (st, v) = status(lab, "GET", path, None, "");
        assert_eq!(st, 401, "{path} without a token");
        assert!(v["error"].is_string(), "{path}: JSON error");
        let (st, _) = status(lab, "GET", path, Some("Bearer wrong-token-0123456789"), "");
        assert_eq!(st, 401, "{path} with a wrong token");
        let (st, _) = status(lab, "GET", path, Some(&format!("Basic {READ_TOKEN}")), "");
        assert_eq!(st, 401, "{path} with a non-bearer scheme");
        let (st, _) = status(lab, "GET", path, Some(&read), "");
        assert_eq!(st, 200, "{path} with the read token");
        let (st, _) = status(lab, "GET", path, Some(&admin), "");
        assert_eq!(st, 200, "{path} with the admin token");
    }
    for (method, path, body) in [
        ("PATCH", "/api/v1/config", r#"{"sip":{"t1_ms":400}}"#),
        ("PUT", "/api/v1/trunks/x", r#"{"proxy":"198.18.2.3:5060"}"#),
        ("DELETE", "/api/v1/calls/1", ""),
        ("POST", "/api/v1/reload", ""),
        ("POST", "/api/v1/drain", ""),
    ] {
        let (st, v) = status(lab, method, path, Some(&read), body);
        assert_eq!(st, 403, "{method} {path} with the read token: {v}");
        let (st, _) = status(lab, method, path, None, body);
        assert_eq!(st, 401, "{method} {path} without a token");
    }
    // Tokens never leave the SBC; sending the redacted value back keeps them.
    let c = lab.json("GET", "/api/v1/config", None, 200);
    assert_eq!(c["admin"]["token"], "<redacted>");
    assert!(!c.to_string().contains(ADMIN_TOKEN));
    let v = lab.json("PUT", "/api/v1/config", Some(&c.to_string()), 200);
    assert_eq!(v["changed"], json!([]), "{v}");
    let (st, _) = status(lab, "GET", "/api/v1/calls", Some(&read), "");
    assert_eq!(st, 200, "tokens unchanged");
}

/// The read-only views and the honest "not built yet" answers.
fn views(lab: &MediaLab) {
    let r = lab.request("GET", "/readyz", None).expect("readyz");
    assert_eq!(r.status, 200);
    let routes = lab.json("GET", "/api/v1/routes", None, 200);
    // No [[route]]: every call tries the trunks in order; no [[inbound]]: the PBX.
    assert_eq!(routes["outbound"], json!([]), "{routes}");
    assert_eq!(
        routes["outbound_default"]["trunks"],
        json!(["carrier"]),
        "{routes}"
    );
    assert_eq!(
        routes["inbound_default"]["target"], "198.18.1.2:5060",
        "{routes}"
    );
    let acls = lab.json("GET", "/api/v1/acls", None, 200);
    assert_eq!(acls["inside"]["allow"], json!(["198.18.1.0/24"]), "{acls}");
    assert_eq!(
        acls["outside"]["allow"][0]["address"], "198.18.2.2",
        "{acls}"
    );
    let bans = lab.json("GET", "/api/v1/bans", None, 200);
    assert_eq!(bans, json!({"enabled": true, "bans": []}));
    lab.json("DELETE", "/api/v1/bans/192.0.2.1", None, 404);
    lab.json("DELETE", "/api/v1/bans/not-an-address", None, 400);
    let v = lab.json("POST", "/api/v1/trunks/carrier/register", None, 409);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("registration is disabled")),
        "{v}"
    );
    lab.json("POST", "/api/v1/trunks/nope/register", None, 404);
    lab.json("GET", "/api/v1/trunks/nope", None, 404);
    let media = lab.media();
    assert_eq!(media["xdp"]["state"], "off", "{media}");
    let calls = lab.json("GET", "/api/v1/calls", None, 200);
    assert_eq!(calls["total"], 0);
    lab.json("GET", "/api/v1/calls/42", None, 404);
    lab.json("GET", "/api/v1/calls/x", None, 400);
    lab.json("GET", "/api/v1/nothing-here", None, 404);
    lab.json("PATCH", "/api/v1/calls", Some("{}"), 405);
}

fn live_reconfiguration_keeps_calls(lab: &MediaLab) {
    let (uas, uac) = outbound_calls(lab, "6", "9000");
    let listed = wait_answered(lab, 6);
    let calls = listed["calls"].as_array().expect("calls");
    let id = calls[0]["id"].as_u64().expect("id");
    assert_eq!(calls[0]["direction"], "outbound");
    // Filters and paging.
    let page = lab.json("GET", "/api/v1/calls?limit=2&offset=1", None, 200);
    assert_eq!(page["total"], 6);
    assert_eq!(page["calls"].as_array().map(Vec::len), Some(2));
    let none = lab.json("GET", "/api/v1/calls?direction=inbound", None, 200);
    assert_eq!(none["total"], 0);
    for bad in [
        "?limit=0",
        "?limit=x",
        "?direction=up",
        "?colour=red",
        "?offset=-1",
    ] {
        let (st, v) = status(
            lab,
            "GET",
            &format!("/api/v1/calls{bad}"),
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            "",
        );
        assert_eq!(st, 400, "{bad}: {v}");
    }
    // One call: both legs and its media.
    let call = lab.json("GET", &format!("/api/v1/calls/{id}"), None, 200);
    assert_eq!(call["legs"].as_array().map(Vec::len), Some(2), "{call}");
    assert_eq!(call["legs"][0]["side"], "inside");
    assert_eq!(call["legs"][1]["peer"], "198.18.2.2:5060");
    assert!(call["media"]["streams"].is_array(), "media stats: {call}");

    // A bad change: every problem listed, nothing changed.
    let before = lab.json("GET", "/api/v1/config", None, 200);
    let (st, v) = status(
        lab,
        "PATCH",
        "/api/v1/config",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        r#"{"sip":{"t1_ms":"fast"},"pbx":{"colour":1}}"#,
    );
    assert_eq!(st, 422, "{v}");
    let paths: Vec<&str> = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"sip.t1_ms") && paths.contains(&"pbx.colour"),
        "{v}"
    );
    let (st, v) = status(
        lab,
        "PATCH",
        "/api/v1/config",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        r#"{"media":{"port_min":3}}"#,
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["problems"][0]["path"], "media.port_min", "{v}");
    assert_eq!(lab.json("GET", "/api/v1/config", None, 200), before);

    // Good changes while the calls are up.
    let v = lab.json(
        "PATCH",
        "/api/v1/config",
        Some(r#"{"sip":{"t1_ms":400}}"#),
        200,
    );
    assert_eq!(v["changed"], json!(["sip.t1_ms"]), "{v}");
    assert_eq!(v["restart_required"], json!([]));
    let v = lab.json(
        "PUT",
        "/api/v1/trunks/backup",
        Some(r#"{"proxy":"198.18.2.3:5060"}"#),
        201,
    );
    assert_eq!(v["changed"], json!(["trunk"]));
    let trunks = lab.json("GET", "/api/v1/trunks", None, 200);
    assert_eq!(trunks.as_array().map(Vec::len), Some(2));
    assert_eq!(trunks[1]["registration"]["state"], "disabled");
    let t = lab.json("GET", "/api/v1/trunks/backup", None, 200);
    assert_eq!(t["config"]["proxy"], "198.18.2.3:5060");
    let acls = lab.json("GET", "/api/v1/acls", None, 200);
    assert_eq!(acls["outside"]["allow"][1]["address"], "198.18.2.3");
    let v = lab.json(
        "PATCH",
        "/api/v1/config",
        Some(r#"{"media":{"timeout_s":30}}"#),
        200,
    );
    assert_eq!(v["restart_required"], json!(["media.timeout_s"]), "{v}");
    // Persisted: the file parses and holds the changes.
    let (file, _) = sbc::config::load_file(&lab.config).expect("persisted file is valid");
    assert_eq!(file.sip.t1_ms, 400);
    assert_eq!(file.trunks.len(), 2);
    // SIGHUP re-reads the file; a bad file is refused and the running config stays.
    let text = std::fs::read_to_string(&lab.config).expect("read config");
    std::fs::write(&lab.config, text.replace("t1_ms = 400", "t1_ms = \"x\"")).expect("write");
    lab.sbc.as_ref().expect("sbc").signal(Signal::SIGHUP);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lab.json("GET", "/api/v1/config", None, 200)["sip"]["t1_ms"],
        400
    );
    let (st, v) = status(
        lab,
        "POST",
        "/api/v1/reload",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        "",
    );
    assert_eq!(
        (st, v["problems"][0]["path"].as_str()),
        (422, Some("sip.t1_ms")),
        "{v}"
    );
    std::fs::write(&lab.config, text.replace("t1_ms = 400", "t1_ms = 450")).expect("write");
    lab.sbc.as_ref().expect("sbc").signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.json("GET", "/api/v1/config", None, 200)["sip"]["t1_ms"] != 450 {
        assert!(Instant::now() < deadline, "SIGHUP did not apply the file");
        thread::sleep(Duration::from_millis(100));
    }
    let v = lab.json("POST", "/api/v1/reload", None, 200);
    assert_eq!(v["changed"], json!([]), "file unchanged since SIGHUP: {v}");
    lab.json("DELETE", "/api/v1/trunks/backup", None, 200);
    lab.json("DELETE", "/api/v1/trunks/backup", None, 404);
    let (st, v) = status(
        lab,
        "DELETE",
        "/api/v1/trunks/carrier",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        "",
    );
    assert_eq!(st, 422, "the last trunk cannot go: {v}");

    // Every call completes normally (SIPp fails on any error or unexpected message).
    wait_ok(uac, "SIPp uac (PBX)");
    wait_ok(uas, "SIPp uas (carrier)");
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_ended_total{direction=\"outbound\",reason=\"bye\"} 6"),
        "{metrics}"
    );
}

fn end_call_sends_bye_both_ways(lab: &MediaLab) {
    let (uas, uac) = outbound_calls(lab, "1", "60000");
    let listed = wait_answered(lab, 1);
    let id = listed["calls"][0]["id"].as_u64().expect("id");
    lab.json("DELETE", &format!("/api/v1/calls/{id}"), None, 204);
    lab.json("DELETE", &format!("/api/v1/calls/{id}"), None, 404);
    lab.json("GET", &format!("/api/v1/calls/{id}"), None, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.json("GET", "/api/v1/calls", None, 200)["total"] != 0 {
        assert!(Instant::now() < deadline, "call still listed");
        thread::sleep(Duration::from_millis(100));
    }
    // Both SIPp instances got a BYE: they leave their call, long before the 60 s pause ends.
    // (SIPp's default scenarios count an unexpected BYE as a failed call, so only the exit
    // matters here, not its status.)
    for (mut p, what) in [(uac, "uac"), (uas, "uas")] {
        assert!(
            p.wait_timeout(Duration::from_secs(20)).is_some(),
            "SIPp {what} still waiting: no BYE reached it"
        );
    }
    let metrics = lab.request("GET", "/metrics", None).expect("metrics").body;
    assert!(
        metrics.contains("sbc_calls_ended_total{direction=\"outbound\",reason=\"bye\"} 7"),
        "{metrics}"
    );
}

/// Tiny deterministic generator for JSON-ish inputs (no dependency, reproducible failures).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn value(&mut self, depth: u32) -> Value {
        const KEYS: [&str; 12] = [
            "sip", "t1_ms", "media", "port_min", "proxy", "name", "from", "streams", "addr",
            "rtp_port", "trunk", "admin",
        ];
        // No null (a merge patch would delete an optional section: a valid change) and no
        // valid address: the fuzz run must leave the configuration as it found it.
        match self.next() % if depth == 0 { 5 } else { 7 } {
            0 | 1 => json!(self.next().is_multiple_of(3)),
            2 => json!((self.next() as i64) >> (self.next() % 63)),
            3 => {
                json!(["inside", "x", "198.18.2.9", "", "-1", "1e999"][(self.next() % 6) as usize])
            }
            4 => json!(f64::from((self.next() % 1000) as u32) / 7.0),
            5 => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..self.next() % 4)
                    .map(|_| {
                        let k = KEYS[(self.next() % KEYS.len() as u64) as usize].to_owned();
                        (k, self.value(depth - 1))
                    })
                    .collect(),
            ),
        }
    }
}

fn malformed_input_never_gets_a_server_error(lab: &MediaLab) {
    let doc = lab.json("GET", "/api/v1/openapi.json", None, 200);
    for o in sbc::admin::openapi::OPS {
        assert!(
            doc["paths"][o.path][o.method.to_lowercase()].is_object(),
            "{} {} missing from the document",
            o.method,
            o.path
        );
    }
    let config_before = lab.json("GET", "/api/v1/config", None, 200);
    let long = "a".repeat(300);
    let params = [
        "0",
        "7",
        "18446744073709551616",
        "-1",
        "abc",
        "%2e%2e",
        "a%00b",
        "x%FF",
        "%",
        &long,
    ];
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "{",
        "[]",
        "null",
        "\"s\"",
        "{\"a\":",
        "{\"proxy\":5}",
        "{\"proxy\":\"x\"}",
        "{\"from\":\"inside\",\"streams\":\"x\"}",
        "{\"from\":\"inside\",\"streams\":[{}]}",
        "{\"sip\":{\"t1_ms\":-1}}",
        "{\"trunk\":{}}",
        "{\"admin\":{\"token\":\"short\"}}",
        "{\"pbx\":null}",
        "1e999",
        "{\"a\":1,\"a\":2}",
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    bodies.push(vec![0xff, 0xfe, b'{']);
    bodies.push(vec![b' '; 300 * 1024]);
    let mut g = Gen(0x5bc0_ffee);
    for _ in 0..40 {
        bodies.push(g.value(3).to_string().into_bytes());
    }
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut count = 0;
    for o in sbc::admin::openapi::OPS {
        // Draining stops the process once the calls are gone; tests/tests/drain.rs covers it.
        if o.path == "/api/v1/drain" {
            continue;
        }
        let has_param = o.path.contains('{');
        let paths: Vec<String> = if has_param {
            params
                .iter()
                .map(|p| {
                    let (head, rest) = o.path.split_once('{').expect("param");
                    let tail = rest.split_once('}').map_or("", |(_, t)| t);
                    format!("{head}{p}{tail}")
                })
                .collect()
        } else {
            vec![o.path.to_owned()]
        };
        let bodies: &[Vec<u8>] = if o.body.is_some() {
            &bodies
        } else {
            &bodies[..2]
        };
        for (i, path) in paths.iter().enumerate() {
            // Every body on two parameter values; the rest with no body.
            let bodies = if i < 2 { bodies } else { &bodies[..1] };
            for (j, body) in bodies.iter().enumerate() {
                for ctype in if j == 1 {
                    &["application/json", "text/plain"][..]
                } else {
                    &["application/json"][..]
                } {
                    let r = {
                        let _in = sbc_e2e::netns::enter(&lab.lab.sbc).expect("netns");
                        sbc_e2e::http::request_with(
                            media_common::ADMIN.parse().expect("literal"),
                            o.method,
                            path,
                            &[("Content-Type", ctype), ("Authorization", &auth)],
                            Some(body),
                        )
                    }
                    .unwrap_or_else(|| panic!("{} {path}: no response", o.method));
                    count += 1;
                    let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
                    assert!(
                        r.status < 500 || (r.status == 503 && o.responses.contains(&503)),
                        "{} {path} body {shown:?}: {} {}",
                        o.method,
                        r.status,
                        r.body
                    );
                    if r.status >= 400 {
                        let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|_| {
                            panic!(
                                "{} {path}: {} without a JSON error: {}",
                                o.method, r.status, r.body
                            )
                        });
                        assert!(v["error"].is_string(), "{} {path}: {}", o.method, r.body);
                    }
                    // Documented statuses (the generic 4xx of malformed requests aside).
                    let generic = [400, 401, 403, 404, 405, 413, 415, 422];
                    assert!(
                        o.responses.contains(&r.status) || generic.contains(&r.status),
                        "{} {path}: undocumented status {}",
                        o.method,
                        r.status
                    );
                }
            }
        }
    }
    assert!(count > 500, "only {count} requests");
    assert_eq!(
        lab.json("GET", "/api/v1/config", None, 200),
        config_before,
        "malformed input changed the configuration"
    );
}
